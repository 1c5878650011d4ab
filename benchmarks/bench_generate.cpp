// Benchmark: one image (or a batch) through a preset with IIDM-size models (configs/models/iidm.json,
// random weights: speed does not depend on the values) at 512x384. Prints seconds per image, NFE
// and a JSON line. Never gates anything on wall time.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "core/runtime.h"
#include "pipeline/pipeline.h"

int main(int argc, char** argv) {
  std::string config_path = std::string(IIDM_SOURCE_DIR) + "/configs/models/iidm.json";
  std::string preset = "fast", precision = "fp32";
  bool channels_last = false, two_pass = false;
  int batch = 1, width = 512, height = 384, threads = 0, max_stages = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--config")
      config_path = next();
    else if (a == "--preset")
      preset = next();
    else if (a == "--precision")
      precision = next();
    else if (a == "--channels-last")
      channels_last = true;
    else if (a == "--two-pass")
      two_pass = true;
    else if (a == "--batch")
      batch = std::stoi(next());
    else if (a == "--width")
      width = std::stoi(next());
    else if (a == "--height")
      height = std::stoi(next());
    else if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--stages")
      max_stages = std::stoi(next());
    else {
      std::puts(
          "bench_generate [--preset fast|iidm-paper|FILE] [--precision fp32|bf16] [--channels-last] [--two-pass]\n"
          "               [--batch N] [--width 512] [--height 384] [--threads N] [--stages K (first K only)]");
      return a == "--help" ? 0 : 2;
    }
  }
  try {
    threads = iidm::configure_threads(threads);
    const std::string preset_path = preset.find('/') == std::string::npos
                                        ? std::string(IIDM_SOURCE_DIR) + "/configs/presets/" + preset + ".json"
                                        : preset;
    iidm::Preset p = iidm::Preset::from_file(preset_path);
    if (max_stages > 0 && max_stages < static_cast<int>(p.stages.size())) p.stages.resize(max_stages);
    iidm::ModelConfig config = iidm::ModelConfig::from_file(config_path);
    torch::manual_seed(0);
    iidm::UNetModel unet(config.unet);
    iidm::Autoencoder ae(*config.autoencoder);
    {
      torch::NoGradGuard no_grad;
      for (auto& param : unet->parameters()) param.uniform_(-0.02, 0.02);
    }
    iidm::PipelineOptions options;
    options.precision = iidm::parse_precision(precision);
    options.channels_last = channels_last;
    options.batched_guidance = !two_pass;
    iidm::Pipeline pipeline(config, {unet}, {}, ae, options);

    std::vector<iidm::GenerationItem> items;
    for (int b = 0; b < batch; ++b) {
      iidm::GenerationItem it;
      it.name = "bench" + std::to_string(b);
      // A blocky landscape-like layout: sky, mountain, water bands.
      it.labels = torch::full({height, width}, 1, torch::kInt64);
      it.labels.narrow(0, height / 3, height / 3).fill_(0);
      it.labels.narrow(0, 2 * height / 3, height - 2 * height / 3).fill_(2);
      it.start = torch::rand({3, height, width}) * 2 - 1;
      it.seed = b;
      items.push_back(it);
    }
    int64_t last_tenth = -1;
    const auto t0 = std::chrono::steady_clock::now();
    iidm::GenerationResult r = pipeline.generate(items, p.stages, [&](int64_t done, int64_t total) {
      if (done * 10 / total != last_tenth) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "  %ld/%ld steps, %.1f s elapsed\n", static_cast<long>(done), static_cast<long>(total), s);
        last_tenth = done * 10 / total;
      }
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("preset %s, %d image(s) %dx%d, %s%s, %s guidance, %d threads\n", p.name.c_str(), batch, width, height,
                precision.c_str(), channels_last ? " channels-last" : "", two_pass ? "two-pass" : "batched", threads);
    std::printf("  denoising steps %lld, U-Net forwards per image (NFE) %lld\n",
                static_cast<long long>(r.denoising_steps), static_cast<long long>(r.unet_forwards_per_image));
    std::printf("  seconds per image %.1f (total %.1f)\n", seconds / batch, seconds);
    std::printf(
        "{\"bench\":\"generate\",\"preset\":\"%s\",\"stages\":%zu,\"batch\":%d,\"width\":%d,\"height\":%d,"
        "\"precision\":\"%s\",\"channels_last\":%s,\"nfe\":%lld,\"seconds_per_image\":%.2f}\n",
        p.name.c_str(), p.stages.size(), batch, width, height, precision.c_str(), channels_last ? "true" : "false",
        static_cast<long long>(r.unet_forwards_per_image), seconds / batch);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
