// Benchmark: one forward of the IIDM-size U-Net (configs/models/iidm.json, random weights) on a
// VQ-f4 latent of a 512x384 image (1x3x96x128). Prints seconds per forward, parameters, peak
// memory, and a JSON line; never gates anything on wall time.
#include <sys/resource.h>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "core/labels.h"
#include "core/runtime.h"
#include "core/state_dict.h"
#include "pipeline/model_config.h"
#include "unet/unet.h"

namespace {

double peak_rss_mib() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // kilobytes on Linux
}

void usage() {
  std::puts(
      "bench_unet [--config configs/models/iidm.json] [--precision fp32|bf16] [--channels-last]\n"
      "           [--batch N] [--height 96] [--width 128] [--runs 3] [--threads N] [--device cpu]");
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = std::string(IIDM_SOURCE_DIR) + "/configs/models/iidm.json";
  std::string precision = "fp32", device_name = "cpu";
  bool channels_last = false;
  int batch = 1, height = 96, width = 128, runs = 3, threads = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--config")
      config_path = next();
    else if (a == "--precision")
      precision = next();
    else if (a == "--channels-last")
      channels_last = true;
    else if (a == "--batch")
      batch = std::stoi(next());
    else if (a == "--height")
      height = std::stoi(next());
    else if (a == "--width")
      width = std::stoi(next());
    else if (a == "--runs")
      runs = std::stoi(next());
    else if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--device")
      device_name = next();
    else {
      usage();
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  try {
    threads = iidm::configure_threads(threads);
    const torch::Device device = iidm::parse_device(device_name);
    const auto dtype = iidm::parse_precision(precision);
    const iidm::ModelConfig config = iidm::ModelConfig::from_file(config_path);
    const double rss_before = peak_rss_mib();
    iidm::UNetModel model(config.unet);
    model->eval();
    model->to(device, dtype);
    const auto memory_format = channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
    if (channels_last)
      for (auto& p : model->parameters())
        if (p.dim() == 4) p.set_data(p.data().contiguous(memory_format));
    const int64_t params = iidm::count_parameters(*model);

    torch::NoGradGuard no_grad;
    torch::manual_seed(0);
    const int C = config.unet.in_channels;
    torch::Tensor x = torch::randn({batch, C, height, width}).to(device).contiguous(memory_format);
    torch::Tensor labels = torch::randint(0, config.unet.num_labels(), {batch, height, width});
    torch::Tensor y = iidm::one_hot_labels(labels, config.unet.num_labels()).to(device).contiguous(memory_format);
    torch::Tensor t = torch::full({batch}, 500, torch::kInt64).to(device);

    model->forward(x, t, y);  // warm-up: oneDNN primitive creation, allocator
    std::vector<double> seconds;
    for (int r = 0; r < runs; ++r) {
      const auto start = std::chrono::steady_clock::now();
      torch::Tensor out = model->forward(x, t, y);
      if (device.is_cuda()) torch::cuda::synchronize();
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    std::printf("IIDM U-Net forward, %dx%dx%dx%d, %s%s, %d threads, %s\n", batch, C, height, width, precision.c_str(),
                channels_last ? " channels-last" : "", threads, device_name.c_str());
    std::printf("  parameters          %lld\n", static_cast<long long>(params));
    std::printf("  seconds / forward   median %.3f  min %.3f  max %.3f  (%d runs)\n", median, seconds.front(),
                seconds.back(), runs);
    std::printf("  peak RSS            %.0f MiB (%.0f MiB before building the model)\n", peak_rss_mib(), rss_before);
    std::printf(
        "{\"bench\":\"unet_forward\",\"batch\":%d,\"height\":%d,\"width\":%d,\"precision\":\"%s\",\"channels_last\":%s,"
        "\"threads\":%d,\"parameters\":%lld,\"median_s\":%.4f,\"min_s\":%.4f,\"peak_rss_mib\":%.0f}\n",
        batch, height, width, precision.c_str(), channels_last ? "true" : "false", threads,
        static_cast<long long>(params), median, seconds.front(), peak_rss_mib());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
