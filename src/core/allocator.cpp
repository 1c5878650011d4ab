// The process-wide malloc settings every iidm program runs with. This file is linked into each
// executable as an object (CMakeLists.txt), not through the static library, so its initialiser
// always runs, before main(), in the CLI, the benchmarks and the tests alike.
//
// Why: glibc serves every block above its mmap threshold (128 KiB, adapting up to 32 MiB) with a
// fresh mmap and returns it to the kernel on free, and trims the heap top once 128 KiB+ is free.
// A U-Net forward allocates and frees hundreds of activations of 1–100 MiB, so each one is faulted
// in page by page again on every step: on the 2-core machines this took up to half the run time,
// most of it system time (docs/performance.md has the figures). Raising both thresholds keeps freed
// blocks in the heap for reuse. The peak footprint is unchanged; the heap simply is not shrunk
// below it until the process exits.
//
// IIDM_MALLOC=system keeps glibc's defaults (to measure the difference); anything else is refused.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace iidm {
namespace {

bool configure_allocator() {
  const char* mode = std::getenv("IIDM_MALLOC");
  if (mode && std::strcmp(mode, "system") == 0) return false;
  if (mode && *mode && std::strcmp(mode, "tuned") != 0) {
    std::fprintf(stderr, "iidm: IIDM_MALLOC='%s' is not 'tuned' (the default) or 'system'\n", mode);
    std::exit(2);
  }
#if defined(__GLIBC__)
  // glibc >= 2.35 accepts any threshold (older ones cap it at 32 MiB and return 0: still better).
  constexpr int kNever = 0x7fffffff;  // 2 GiB - 1: larger blocks are rare and costly either way
  mallopt(M_MMAP_THRESHOLD, kNever);
  mallopt(M_TRIM_THRESHOLD, kNever);
  // One arena: the worker threads' arenas are mmap'd heaps of at most 64 MiB that cannot keep
  // larger blocks; with two to a few cores the shared arena's lock costs nothing measurable.
  mallopt(M_ARENA_MAX, 1);
  return true;
#else
  return false;
#endif
}

[[maybe_unused]] const bool allocator_configured = configure_allocator();

}  // namespace
}  // namespace iidm
