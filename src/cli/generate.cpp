// `iidm generate`: one label map (+ style reference) -> image(s).
#include <chrono>
#include <filesystem>
#include <iostream>

#include "cli/generation_options.h"
#include "core/error.h"
#include "core/image.h"
#include "core/labels.h"
#include "core/progress.h"
#include "core/seed.h"

namespace iidm::cli {
namespace fs = std::filesystem;
using torch::Tensor;

std::function<int()> add_generate_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("generate", "Generate an image from a label map (and a style reference in IIDM mode)");
  struct Args {
    GenerationOptions gen;
    std::string mask, style, out, edit_mask, instance;
    int samples = 1, width = 0, height = 0;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--mask", args->mask, "Label map PNG (grey values or palette indices = class ids)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--style", args->style,
                  "Style reference image (IIDM: required); for pixel models an image to start from or to edit")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", args->out, "Output image (.png or .jpg); with -n N, _1 ... _N are appended")->required();
  cmd->add_option("-n,--samples", args->samples, "Number of diverse samples (different noise)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--width", args->width, "Output width (default: the mask's)")->check(CLI::PositiveNumber);
  cmd->add_option("--height", args->height, "Output height (default: the mask's)")->check(CLI::PositiveNumber);
  cmd->add_option("--edit-mask", args->edit_mask,
                  "Semantic editing: a grey PNG, white = regenerate under --mask, black = keep --style unchanged")
      ->check(CLI::ExistingFile);
  cmd->add_option(
         "--instance", args->instance,
         "Instance-id map (16-bit or 8-bit PNG) for models with SDM's instance-edge channel (Cityscapes, CelebA)")
      ->check(CLI::ExistingFile);
  args->gen.add_to(cmd);
  return [args, &common]() {
    const auto start_time = std::chrono::steady_clock::now();
    const std::vector<Stage> stages = args->gen.stages();
    Pipeline pipeline = Pipeline::load(args->gen.files, args->gen.pipeline_options(common));
    // A size the machine cannot hold is refused from the PNG header, before the map is decoded.
    if (const auto dims = png_dimensions(args->mask)) {
      const int64_t W = args->width > 0 ? args->width : dims->first, H = args->height > 0 ? args->height : dims->second;
      pipeline.check_memory(args->samples, H, W, stages, args->mask);
    }
    Tensor labels = read_label_map(args->mask, args->width, args->height)[0];
    check_label_range(labels, pipeline.config().unet.num_labels(), args->gen.ignore_label, args->mask);
    const int64_t H = labels.size(0), W = labels.size(1);
    Tensor start;
    if (!args->style.empty()) start = read_image(args->style, static_cast<int>(W), static_cast<int>(H))[0];
    if (pipeline.latent() && !start.defined())
      fail("this is a latent (IIDM) model: give a style reference with --style");
    Tensor edit;
    if (!args->edit_mask.empty()) {
      if (!start.defined()) fail("--edit-mask needs the image to edit as --style");
      edit = (read_label_map(args->edit_mask, static_cast<int>(W), static_cast<int>(H))[0] > 127).to(torch::kFloat32);
    }
    Tensor instance;
    if (!args->instance.empty()) instance = read_label_map(args->instance, static_cast<int>(W), static_cast<int>(H))[0];
    std::vector<GenerationItem> items;
    const std::string stem = fs::path(args->out).stem().string();
    for (int i = 0; i < args->samples; ++i) {
      GenerationItem item;
      item.name = args->samples == 1 ? stem : fmt::format("{}_{}", stem, i + 1);
      item.labels = labels;
      item.start = start;
      item.edit_mask = edit;
      item.instance = instance;
      item.seed = derive_seed(args->gen.seed, item.name);
      items.push_back(item);
    }
    fmt::print(stderr, "generating {} image(s) {}x{}: {}\n", items.size(), W, H, describe(stages));
    ProgressBar bar("denoising", pipeline.denoising_steps(stages));
    GenerationResult result = pipeline.generate(items, stages, [&](int64_t done, int64_t) { bar.update(done); });
    bar.finish();
    for (size_t i = 0; i < items.size(); ++i) {
      const fs::path out = args->samples == 1 ? fs::path(args->out)
                                              : fs::path(args->out).parent_path() /
                                                    (items[i].name + fs::path(args->out).extension().string());
      write_image(out.string(), result.images[static_cast<int64_t>(i)]);
      fmt::print("wrote {}\n", out.string());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
    fmt::print("{} denoising steps, {} U-Net forwards per image (NFE), {:.1f} s total, {:.1f} s per image\n",
               result.denoising_steps, result.unet_forwards_per_image, seconds, seconds / items.size());
    return 0;
  };
}

}  // namespace iidm::cli
