# Test tiers: ctest labels given by test name (CONTRIBUTING.md, README "Testing").
#   parity  the reference cases of ../shared/parity, in the suite and through `iidm check`
#   cli     tests that run the `iidm` binary
#   slow    training end to end, distillation, generation end to end, and any other test outside the
#           parity tier that takes more than a few seconds (parity cases take up to a minute)
#   fast    everything else, unit tests of a few seconds at most: `ctest --test-dir build -L fast -j2`
# A test can be in several of parity, cli and slow; it is fast only when it is in none of them, so a
# new test is fast until its name matches a pattern here.
# tests/CMakeLists.txt labels the tests it adds itself; ctest includes this file again after the
# GoogleTest cases are discovered (their names are in iidm_tests_TESTS then) and labels those.
set(IIDM_TIER_PARITY "^(Shared/ParityCase|ParityCases|ParityTolerance)\\." "^cli_check_parity")
set(IIDM_TIER_CLI "^(BatchCli|TrainingCli|AblateCli|GenerateCli)\\." "^web_editor$" "^Training\\.TwoProcessesOnLoopbackEqualOneProcess$" "^cli_check_parity")
set(IIDM_TIER_SLOW "^(Training|AutoencoderTraining|Distillation|TrainingCli|BatchCli|AblateCli|Generation)\\."
    "^Segmenter\\.TrainingLiftsPixelAccuracyAndResumesExactly$" "^Configs\\.IidmBuildsThePublishedDenoiser$"
    "^convert_checkpoint$" "^ablation_report$" "^Precision\\." "^Serve\\." "^web_editor$" "^Tiling\\.DemoDecoderWithTheImagesStatistics")

function(iidm_test_labels name out_var)
  set(labels "")
  foreach(tier parity cli slow)
    string(TOUPPER "${tier}" upper)
    foreach(pattern IN LISTS IIDM_TIER_${upper})
      if(name MATCHES "${pattern}")
        list(APPEND labels ${tier})
        break()
      endif()
    endforeach()
  endforeach()
  if(NOT labels)
    set(labels fast)
  endif()
  set(${out_var} "${labels}" PARENT_SCOPE)
endfunction()

foreach(test IN LISTS iidm_tests_TESTS)
  iidm_test_labels("${test}" labels)
  set_tests_properties("${test}" PROPERTIES LABELS "${labels}")
endforeach()
