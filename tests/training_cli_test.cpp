// The training commands end to end, as real processes on real files: make-data, then
// train-autoencoder (weights, a config with the measured latent scale, reconstruction grids),
// train-unet on that autoencoder (sample grids), distill (resumed between rounds), train-segmenter
// (held-out accuracy), and evaluate (metrics; a second run reuses the generated images instead of
// generating again).
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/config.h"
#include "core/fs.h"
#include "core/image.h"
#include "test_util.h"

namespace iidm {
namespace {
namespace fs = std::filesystem;

// Runs the iidm CLI with `args` (one thread), output to `log`; returns the exit code.
int iidm(const std::string& args, const std::string& log) {
  const int status = std::system(("\"" IIDM_CLI "\" --threads 1 " + args + " > \"" + log + "\" 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(TrainingCli, AutoencoderUNetSegmenterAndEvaluationEndToEnd) {
  test::TempDir dir;
  const std::string train = dir.file("train"), held = dir.file("heldout"), log = dir.file("log.txt");
  ASSERT_EQ(iidm("make-data --out " + train + " --count 6 --size 32x32 --seed 1", log), 0) << read_file(log);
  ASSERT_EQ(iidm("make-data --out " + held + " --count 4 --first 1000 --size 32x32 --seed 2", log), 0)
      << read_file(log);

  std::ofstream(dir.file("ae.json")) << R"({"kind": "kl", "embed_dim": 3, "ddconfig": {"double_z": true,
    "z_channels": 3, "resolution": 32, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1, "norm_groups": 8}})";
  ASSERT_EQ(iidm("train-autoencoder --model " + dir.file("ae.json") + " --data " + train +
                     " --size 32x32 --batch-size 2 --steps 3 --sample-every 3 --out " + dir.file("ae"),
                 log),
            0)
      << read_file(log);
  for (const char* f :
       {"ae/autoencoder.safetensors", "ae/autoencoder.json", "ae/checkpoint.safetensors", "ae/samples/step-000003.png"})
    EXPECT_TRUE(fs::exists(dir.file(f))) << f;
  const Json ae_config = read_json_file(dir.file("ae/autoencoder.json"));
  EXPECT_NE(ae_config["scale_factor"].get<double>(), 1.0) << "the latent scale is measured (scale_by_std)";
  EXPECT_EQ(ae_config["ddconfig"]["norm_groups"].get<int>(), 8);

  // A model config naming the trained autoencoder's config file.
  fs::copy_file(dir.file("ae/autoencoder.json"), dir.file("autoencoder.json"));
  std::ofstream(dir.file("model.json")) << R"({"unet": {"in_channels": 3, "model_channels": 32, "out_channels": 6,
    "num_res_blocks": 1, "attention_resolutions": [2], "channel_mult": [1, 2], "num_classes": 29, "num_head_channels": 16,
    "use_scale_shift_norm": true, "resblock_updown": true},
    "diffusion": {"steps": 1000, "noise_schedule": "linear", "learn_sigma": true}, "autoencoder": "autoencoder.json"})";
  ASSERT_EQ(
      iidm("train-unet --model " + dir.file("model.json") + " --data " + train + " --autoencoder " +
               dir.file("ae/autoencoder.safetensors") + " --size 32x32 --batch-size 2 --steps 2 --crop 8 --bf16 " +
               "--sample-every 2 --cache " + dir.file("cache.safetensors") + " --out " + dir.file("unet"),
           log),
      0)
      << read_file(log);
  ASSERT_TRUE(fs::exists(dir.file("unet/samples/step-000002.png")));
  // Grid rows: mask | reference | sample, one row per item (4 here, at most).
  const torch::Tensor grid = read_image(dir.file("unet/samples/step-000002.png"));
  EXPECT_EQ(grid.size(3), 3 * 32);
  EXPECT_EQ(grid.size(2), 4 * 32);

  // Distillation as a command. A run of one round, then a run asking for two continues from the
  // checkpoint (round 1 is not redone) and writes the same student as one run of two rounds; the
  // student is an ordinary U-Net for generate.
  const std::string distill = "distill --model " + dir.file("model.json") + " --teacher " +
                              dir.file("unet/unet-ema.safetensors") + " --cache " + dir.file("cache.safetensors") +
                              " --teacher-steps 20 --iterations 2 --batch-size 2 --guidance 2 --save-every 1";
  ASSERT_EQ(iidm(distill + " --rounds 1 --out " + dir.file("d1"), log), 0) << read_file(log);
  EXPECT_TRUE(fs::exists(dir.file("d1/student-ddim10.safetensors")));
  ASSERT_EQ(iidm(distill + " --rounds 2 --out " + dir.file("d1"), log), 0) << read_file(log);
  EXPECT_NE(read_file(log).find("1 round(s) done"), std::string::npos) << read_file(log);
  EXPECT_EQ(read_file(log).find("round 1 ("), std::string::npos) << "round 1 is not run again: " << read_file(log);
  ASSERT_EQ(iidm(distill + " --rounds 2 --out " + dir.file("d2"), log), 0) << read_file(log);
  EXPECT_EQ(read_file(dir.file("d1/student-ddim5.safetensors")), read_file(dir.file("d2/student-ddim5.safetensors")));
  ASSERT_EQ(iidm(distill + " --rounds 2 --out " + dir.file("d2"), log), 0) << read_file(log);
  EXPECT_NE(read_file(log).find("already done"), std::string::npos) << read_file(log);
  ASSERT_EQ(iidm("generate --model " + dir.file("model.json") + " --unet " + dir.file("d1/student-ddim5.safetensors") +
                     " --autoencoder " + dir.file("ae/autoencoder.safetensors") + " --mask " + held +
                     "/labels/01000.png --style " + held +
                     "/imgs/01001.jpg --steps ddim5 --strength 1 --guidance 1 --out " + dir.file("student.png"),
                 log),
            0)
      << read_file(log);
  EXPECT_EQ(read_image(dir.file("student.png")).size(3), 32);

  std::ofstream(dir.file("seg.json")) << R"({"channels": 16, "channel_mult": [1, 2], "blocks": 1})";
  ASSERT_EQ(iidm("train-segmenter --model " + dir.file("seg.json") + " --data " + train + " --validation " + held +
                     " --size 32x32 --batch-size 2 --steps 3 --out " + dir.file("seg"),
                 log),
            0)
      << read_file(log);
  EXPECT_NE(read_file(log).find("held-out pixel accuracy"), std::string::npos) << read_file(log);

  const std::string evaluate =
      "evaluate --model " + dir.file("model.json") + " --unet " + dir.file("unet/unet-ema.safetensors") +
      " --autoencoder " + dir.file("ae/autoencoder.safetensors") + " --segmenter " +
      dir.file("seg/segmenter.safetensors") + " --segmenter-config " + dir.file("seg/segmenter.json") + " --data " +
      held + " --count 4 --steps ddim10 --strength 0.5 --out " + dir.file("eval");
  ASSERT_EQ(iidm(evaluate, log), 0) << read_file(log);
  const Json metrics = read_json_file(dir.file("eval/metrics.json"));
  EXPECT_EQ(metrics["summary"]["items"].get<int>(), 4);
  EXPECT_EQ(metrics["items"].size(), 4u);
  for (const char* key : {"segmenter_accuracy_on_ground_truth", "mask_accuracy", "miou", "style_similarity",
                          "style_margin", "style_closest_share"}) {
    const double v = metrics["summary"][key].get<double>();
    EXPECT_TRUE(v >= -1.0 && v <= 1.0) << key << " " << v;
  }
  EXPECT_GE(metrics["summary"]["fid"].get<double>(), 0.0);
  EXPECT_FALSE(metrics["summary"]["features_user_supplied"].get<bool>()) << "the bundled segmenter's features";
  EXPECT_TRUE(metrics["summary"]["competition"].is_object());
  // Item i's reference is item i+1's image.
  EXPECT_EQ(fs::path(metrics["items"][0]["reference"].get<std::string>()).filename(), "01001.jpg");
  const std::string first_image = read_file(dir.file("eval/images/01000.png"));
  ASSERT_EQ(iidm(evaluate, log), 0) << read_file(log);
  EXPECT_EQ(read_file(log).find("generating"), std::string::npos) << "a second run reuses the images";
  EXPECT_EQ(read_file(dir.file("eval/images/01000.png")), first_image);
  EXPECT_EQ(read_json_file(dir.file("eval/metrics.json"))["summary"], metrics["summary"]);

  // `score` on the folder evaluate wrote, with the same references and real images, gives
  // evaluate's numbers: one code path.
  Json mapping;
  for (int i = 0; i < 4; ++i) mapping[fmt::format("0100{}.png", i)] = fmt::format("0100{}.jpg", (i + 1) % 4);
  std::ofstream(dir.file("label_to_img.json")) << mapping.dump();
  ASSERT_EQ(iidm("score --images " + dir.file("eval/images") + " --labels " + held + "/labels --json " +
                     dir.file("label_to_img.json") + " --refs " + held + "/imgs --real " + held + "/imgs --segmenter " +
                     dir.file("seg/segmenter.safetensors") + " --segmenter-config " + dir.file("seg/segmenter.json") +
                     " --out " + dir.file("score/metrics.json"),
                 log),
            0)
      << read_file(log);
  const Json scored = read_json_file(dir.file("score/metrics.json"));
  for (const char* key : {"mask_accuracy", "pixel_accuracy", "miou", "style_similarity", "style_margin",
                          "style_closest_share", "fid", "kid", "real_images"})
    EXPECT_EQ(scored["summary"][key], metrics["summary"][key]) << key;
  EXPECT_EQ(scored["summary"]["competition"], metrics["summary"]["competition"]);
  EXPECT_EQ(scored["items"], metrics["items"]);

  // A bad config key is refused with the file's name.
  std::ofstream(dir.file("bad.json")) << R"({"channels": 16, "chanel_mult": [1, 2]})";
  EXPECT_NE(
      iidm("train-segmenter --model " + dir.file("bad.json") + " --data " + train + " --out " + dir.file("bad"), log),
      0);
  EXPECT_NE(read_file(log).find("chanel_mult"), std::string::npos) << read_file(log);

  // A malformed --size is refused by every command that takes one, before any work.
  for (const std::string size : {"32x", "32x32x", "0x32", "32*32"}) {
    EXPECT_NE(iidm("train-autoencoder --model " + dir.file("ae.json") + " --data " + train + " --size " + size +
                       " --out " + dir.file("bad"),
                   log),
              0);
    EXPECT_NE(read_file(log).find("--size '" + size + "' must be WIDTHxHEIGHT"), std::string::npos) << read_file(log);
  }
  EXPECT_NE(iidm("make-data --out " + dir.file("bad") + " --count 1 --size 8x8", log), 0);
  EXPECT_NE(read_file(log).find("sides >= 16"), std::string::npos) << read_file(log);
}

}  // namespace
}  // namespace iidm
