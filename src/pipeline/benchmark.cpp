#include "pipeline/benchmark.h"

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>

#include "core/conv.h"
#include "core/error.h"
#include "core/image.h"
#include "core/labels.h"
#include "core/process_stats.h"
#include "core/runtime.h"
#include "core/state_dict.h"
#include "pipeline/denoiser.h"

namespace iidm {
using torch::Tensor;

namespace {

const std::vector<std::string> kParts{"machine", "peak",   "unet",   "pair",     "profile",  "encode",
                                      "decode",  "preset", "memory", "generate", "agreement"};

bool wants(const BenchOptions& o, const std::string& part) {
  return std::find(o.parts.begin(), o.parts.end(), part) != o.parts.end();
}

void synchronize(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

// Median wall seconds of `runs` calls after one warm-up call (oneDNN primitive creation, the
// allocator's first touch).
double median_seconds(const std::function<void()>& fn, int runs, const torch::Device& device) {
  if (runs > 1) {
    fn();
    synchronize(device);
  }
  std::vector<double> seconds;
  for (int r = 0; r < runs; ++r) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    synchronize(device);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

double round_to(double v, int digits) {
  const double scale = std::pow(10.0, digits);
  return std::round(v * scale) / scale;
}

// A label map of rectangles of random classes (a layout's statistics matter little for speed).
Tensor random_layout(int64_t height, int64_t width, int num_labels, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  Tensor coarse = torch::randint(0, num_labels, {1, 1, 6, 8}, gen, torch::kInt64).to(torch::kFloat32);
  namespace F = torch::nn::functional;
  return F::interpolate(coarse,
                        F::InterpolateFuncOptions().size(std::vector<int64_t>{height, width}).mode(torch::kNearest))
      .to(torch::kInt64)[0][0];
}

// The 3x3 convolution 320 -> 320 at 64x64: the kind of layer most of a U-Net's time goes to, at the
// library's best for the memory format; GFLOP/s.
double conv_peak(torch::ScalarType dtype, bool channels_last, const torch::Device& device, int runs) {
  torch::NoGradGuard no_grad;
  const auto cl = channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  Tensor x = torch::randn({1, 320, 64, 64}).to(device, dtype).contiguous(cl);
  Tensor w = (torch::randn({320, 320, 3, 3}) * 0.05).to(device, dtype).contiguous(cl);
  const double flops = 2.0 * 320 * 320 * 9 * 64 * 64;
  const double s = median_seconds([&] { torch::conv2d(x, w, {}, 1, 1); }, std::max(runs, 5), device);
  return flops / s / 1e9;
}

struct Models {
  ModelConfig config;
  UNetModel unet{nullptr};
  std::unique_ptr<Pipeline> pipeline;  // only when a part runs the U-Net
  std::optional<LatentCodec> codec;    // latent models: the pipeline's autoencoder, or the only model
};

// The models the parts need: an autoencoder-only run (encode, decode) builds no U-Net, so its
// peak RSS is the autoencoder's own.
Models build_models(const BenchOptions& o, const PipelineOptions& po, bool with_unet) {
  Models m;
  m.config = ModelConfig::from_file(o.files.config);
  Autoencoder ae{nullptr};
  if (m.config.autoencoder) {
    ae = Autoencoder(*m.config.autoencoder);
    if (!o.files.autoencoder.empty()) {
      LoadOptions lo;
      lo.allow_unexpected = true;
      load_state_dict(*ae, o.files.autoencoder, lo);
    }
    m.codec.emplace(ae, po);
  }
  if (with_unet) {
    m.unet = UNetModel(m.config.unet);
    if (!o.files.unets.empty()) load_state_dict(*m.unet, o.files.unets.front());
    m.pipeline = std::make_unique<Pipeline>(m.config, std::vector<UNetModel>{m.unet}, std::vector<double>{}, ae, po);
  }
  return m;
}

// What generate() would estimate for one image of the bench's size, precision and tile.
MemoryQuery memory_query(const BenchOptions& o) {
  MemoryQuery q;
  q.height = o.height;
  q.width = o.width;
  q.element_bytes = static_cast<int64_t>(c10::elementSize(o.pipeline.precision));
  q.guidance_pair = o.pipeline.batched_guidance;
  q.cache_spade = o.pipeline.cache_spade;
  q.tile = o.pipeline.tile;
  return q;
}

struct GenerationInputs {
  Tensor labels, start;
};

GenerationInputs generation_inputs(const BenchOptions& o, const ModelConfig& config) {
  GenerationInputs in;
  in.labels = o.mask.empty() ? random_layout(o.height, o.width, config.unet.num_labels(), o.seed + 1)
                             : read_label_map(o.mask, static_cast<int>(o.width), static_cast<int>(o.height))[0];
  if (!o.style.empty())
    in.start = read_image(o.style, static_cast<int>(o.width), static_cast<int>(o.height))[0];
  else if (config.autoencoder)
    in.start = torch::rand({3, o.height, o.width}, at::detail::createCPUGenerator(o.seed + 2)) * 2 - 1;
  return in;
}

GenerationResult generate_once(Pipeline& pipeline, const GenerationInputs& in, const BenchOptions& o) {
  GenerationItem item;
  item.name = "bench";
  item.labels = in.labels;
  item.start = in.start;
  item.seed = o.seed;
  return pipeline.generate({item}, o.presets.front().second);
}

double psnr_8bit(const Tensor& a, const Tensor& b) {
  auto to8 = [](const Tensor& t) { return ((t.clamp(-1, 1) + 1) * 127.5).round(); };
  const double mse = (to8(a) - to8(b)).pow(2).mean().item<double>();
  return mse == 0 ? INFINITY : 10 * std::log10(255.0 * 255.0 / mse);
}

}  // namespace

void BenchOptions::validate() const {
  if (files.config.empty()) fail("bench: a model config is needed (--model)");
  if (height < 1 || width < 1) fail("bench: size must be positive, got {}x{}", width, height);
  if (runs < 1) fail("bench: --runs must be at least 1, got {}", runs);
  for (const auto& p : parts)
    if (std::find(kParts.begin(), kParts.end(), p) == kParts.end())
      fail("bench: unknown part '{}' (known: {})", p, fmt::join(kParts, ", "));
  if ((wants(*this, "preset") || wants(*this, "generate") || wants(*this, "agreement")) && presets.empty())
    fail("bench: the preset, generate and agreement parts need a preset");
}

namespace {
// The legacy profiler's events of every thread while `fn` runs (the profiler is switched off
// again if fn throws).
torch::autograd::profiler::thread_event_lists profiled(const torch::profiler::impl::ProfilerConfig& config,
                                                       const std::function<void()>& fn) {
  namespace prof = torch::autograd::profiler;
  prof::enableProfilerLegacy(config);
  try {
    fn();
  } catch (...) {
    prof::disableProfilerLegacy();
    throw;
  }
  return prof::disableProfilerLegacy();
}
}  // namespace

double count_flops(const std::function<void()>& fn) {
  namespace prof = torch::autograd::profiler;
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::CPU,
                                                     /*report_input_shapes=*/true, /*profile_memory=*/false,
                                                     /*with_stack=*/false, /*with_flops=*/true);
  const double prepacked_before = prepacked_convolution_flops();
  double total = 0;
  for (auto& events : profiled(config, fn))
    for (auto& e : events)
      if (e.kind() == prof::EventKind::PushRange) total += static_cast<double>(e.flops());
  return total + (prepacked_convolution_flops() - prepacked_before);
}

std::vector<std::pair<std::string, double>> profile_self_seconds(const std::function<void()>& fn) {
  namespace prof = torch::autograd::profiler;
  // Push and pop events nest per thread: self time = inclusive time minus the children's.
  std::map<std::string, double> self;
  for (auto& events : profiled(torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU), fn)) {
    struct Open {
      const prof::LegacyEvent* push;
      double children_us;
    };
    std::vector<Open> stack;
    for (auto& e : events) {
      if (e.kind() == prof::EventKind::PushRange) {
        stack.push_back({&e, 0.0});
      } else if (e.kind() == prof::EventKind::PopRange && !stack.empty()) {
        const Open open = stack.back();
        stack.pop_back();
        const double inclusive = open.push->cpuElapsedUs(e);
        self[open.push->name()] += (inclusive - open.children_us) / 1e6;
        if (!stack.empty()) stack.back().children_us += inclusive;
      }
    }
  }
  std::vector<std::pair<std::string, double>> sorted(self.begin(), self.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return sorted;
}

void run_benchmarks(const BenchOptions& o, const BenchSink& sink) {
  o.validate();
  torch::NoGradGuard no_grad;
  const PipelineOptions& po = o.pipeline;
  const torch::Device device = po.device;
  const std::string precision = precision_name(po.precision);

  if (wants(o, "machine")) {
    const char* malloc_mode = std::getenv("IIDM_MALLOC");
    BenchRecord r{{"bench", "machine"},
                  {"cpu", cpu_model_name()},
                  {"threads", torch::get_num_threads()},
                  {"native_bf16", cpu_has_native_bf16()},
                  {"allocator", malloc_mode && *malloc_mode ? malloc_mode : "tuned"},
                  {"torch", TORCH_VERSION},
                  {"device", device.str()},
                  {"available_gib", round_to(available_memory_bytes() / 1073741824.0, 1)}};
    sink(r);
  }

  // The machine's conv peaks, measured now: every fraction below is of the peak in the run's own
  // precision and memory format, the best this library reaches on this machine for such a layer.
  std::map<std::pair<bool, bool>, double> peaks;  // (bf16, channels-last) -> GFLOP/s
  auto peak_for = [&](torch::ScalarType dtype, bool channels_last) {
    const bool bf16 = dtype == torch::kBFloat16;
    double& slot = peaks[{bf16, channels_last}];
    if (slot == 0) slot = conv_peak(bf16 ? torch::kBFloat16 : torch::kFloat32, channels_last, device, o.runs);
    return slot;
  };
  auto peak_of = [&](torch::ScalarType dtype) { return peak_for(dtype, po.channels_last); };
  if (wants(o, "peak")) {
    for (auto dtype : {torch::kFloat32, torch::kBFloat16})
      for (bool channels_last : {false, true})
        sink(BenchRecord{{"bench", "peak"},
                         {"op", fmt::format("conv3x3 320->320 64x64 {}", channels_last ? "channels-last" : "NCHW")},
                         {"precision", precision_name(dtype)},
                         {"gflops", round_to(peak_for(dtype, channels_last), 1)}});
  }

  if (wants(o, "memory")) {
    // The estimate generate() checks against (pipeline/memory.h), for this size, precision and tile.
    const ModelConfig config = ModelConfig::from_file(o.files.config);
    const MemoryEstimate m = estimate_memory(config, memory_query(o));
    auto mib = [](int64_t b) { return round_to(b / 1048576.0, 0); };
    sink(BenchRecord{{"bench", "memory"},
                     {"size", fmt::format("{}x{}", o.width, o.height)},
                     {"precision", precision},
                     {"tile", po.tile},
                     {"peak_mib", mib(m.peak())},
                     {"unet_mib", mib(m.unet)},
                     {"spade_cache_mib", mib(m.spade_cache)},
                     {"encode_mib", mib(m.encode)},
                     {"decode_mib", mib(m.decode)},
                     {"available_mib", mib(available_memory_bytes())}});
  }

  const bool needs_unet =
      wants(o, "unet") || wants(o, "pair") || wants(o, "profile") || wants(o, "preset") || wants(o, "generate");
  const bool needs_models = needs_unet || wants(o, "encode") || wants(o, "decode");
  if (!needs_models && !wants(o, "agreement")) return;
  Models m = needs_models ? build_models(o, po, needs_unet) : Models{};

  double unet_cached = 0, unet_first = 0, pair_cached = 0, pair_first = 0, encode_s = 0, decode_s = 0;
  if (needs_models) {
    const int64_t f = m.config.autoencoder ? m.config.autoencoder->ddconfig.downsampling_factor() : 1;
    const int64_t h = o.height / f, w = o.width / f;
    const auto memory_format = po.channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
    const int C = m.config.unet.in_channels;
    auto unet_inputs = [&](int64_t n) {
      Tensor x =
          torch::randn({n, C, h, w}, at::detail::createCPUGenerator(o.seed)).to(device).contiguous(memory_format);
      Tensor labels = random_layout(h, w, m.config.unet.num_labels(), o.seed + 1).unsqueeze(0).expand({n, h, w});
      Tensor y = one_hot_labels(labels.contiguous(), m.config.unet.num_labels()).to(device);
      Tensor t = torch::full({n}, 500, torch::kInt64).to(device);
      return std::make_tuple(x, y, t);
    };
    // Times `uncached` (every call computes SPADE's maps: an image's first step) and `cached` (after
    // one call that fills the cache, every later step) and prints a record for each; `extra` fields
    // follow channels_last. Returns {cached seconds, uncached seconds}.
    auto time_cache_off_on = [&](const std::string& part, const std::string& shape, const BenchRecord& extra,
                                 const std::function<void()>& uncached, const std::function<void()>& cached,
                                 const std::function<int64_t()>& cache_bytes) {
      const double peak = peak_of(po.precision);
      const double flops_off = count_flops(uncached);
      const double off = median_seconds(uncached, o.runs, device);
      reset_peak_rss();
      cached();
      const double flops_on = count_flops(cached);
      const double on = median_seconds(cached, o.runs, device);
      for (int with_cache = 0; with_cache < 2; ++with_cache) {
        const double s = with_cache ? on : off, flops = with_cache ? flops_on : flops_off;
        BenchRecord r{{"bench", part}, {"shape", shape}, {"precision", precision}, {"channels_last", po.channels_last}};
        for (auto it = extra.begin(); it != extra.end(); ++it) r[it.key()] = it.value();
        r["spade"] = with_cache ? "cached" : "computed";
        r["median_s"] = round_to(s, 4);
        r["gflop"] = round_to(flops / 1e9, 1);
        r["gflops"] = round_to(flops / s / 1e9, 1);
        r["peak_fraction"] = round_to(flops / s / 1e9 / peak, 3);
        if (with_cache) {
          r["spade_cache_mib"] = round_to(cache_bytes() / 1048576.0, 1);
          r["peak_rss_mib"] = round_to(peak_rss_mib(), 0);
        }
        sink(r);
      }
      return std::make_pair(on, off);
    };
    auto time_unet = [&](int64_t n, const std::string& part) {
      Tensor x, y, t;
      std::tie(x, y, t) = unet_inputs(n);
      SpadeCache cache;
      return time_cache_off_on(
          part, fmt::format("{}x{}x{}x{}", n, C, h, w), BenchRecord::object(), [&] { m.unet->forward(x, t, y); },
          [&] { m.unet->forward(x, t, y, &cache); }, [&] { return cache.bytes(); });
    };
    if (wants(o, "unet") || wants(o, "preset")) std::tie(unet_cached, unet_first) = time_unet(1, "unet");
    // Where a steady-state step (SPADE cached) spends its time, by operator (self time), for
    // batch 1 and the guidance pair.
    for (int64_t n = 1; n <= 2 && wants(o, "profile"); ++n) {
      Tensor x, y, t;
      std::tie(x, y, t) = unet_inputs(n);
      SpadeCache cache;
      m.unet->forward(x, t, y, &cache);
      m.unet->forward(x, t, y, &cache);
      const auto ops = profile_self_seconds([&] { m.unet->forward(x, t, y, &cache); });
      double total = 0;
      for (const auto& op : ops) total += op.second;
      BenchRecord r{{"bench", "profile"}, {"batch", n}, {"precision", precision}, {"total_s", round_to(total, 3)}};
      for (size_t i = 0; i < ops.size() && i < 10; ++i) r[ops[i].first] = round_to(ops[i].second / total, 3);
      sink(r);
    }
    if (wants(o, "pair") || wants(o, "preset")) {
      // The guidance pair as sampling runs it (the Denoiser: one encoder pass shared by both maps,
      // their decoder passes batched or not as --two-pass-guidance says), and for comparison the
      // whole U-Net forward of batch 2 that the references run.
      Tensor x, y, t;
      std::tie(x, y, t) = unet_inputs(1);
      const GuidanceOptions guidance{3.5, po.batched_guidance};
      Denoiser uncached({{m.unet, 1.0}}, guidance, C);
      auto spade = std::make_shared<ConditioningCache>();
      Denoiser cached({{m.unet, 1.0}}, guidance, C, spade);
      std::tie(pair_cached, pair_first) = time_cache_off_on(
          "pair", fmt::format("1x{}x{}x{}", C, h, w), {{"decoder", po.batched_guidance ? "batch 2" : "two passes"}},
          [&] { uncached(x, t, y); }, [&] { cached(x, t, y); }, [&] { return spade->bytes(); });
      const double full = time_unet(2, "pair_full_forward").first;
      if (unet_cached > 0)
        sink(BenchRecord{{"bench", "pair_ratio"},
                         {"precision", precision},
                         {"pair_over_single", round_to(pair_cached / unet_cached, 3)},
                         {"full_forward_pair_over_single", round_to(full / unet_cached, 3)}});
    }
    if (m.codec && (wants(o, "encode") || wants(o, "decode") || wants(o, "preset"))) {
      Tensor images = torch::rand({1, 3, o.height, o.width}, at::detail::createCPUGenerator(o.seed)) * 2 - 1;
      Tensor latents;
      for (const char* part : {"encode", "decode"}) {
        const bool enc = std::string(part) == "encode";
        if (!wants(o, part) && !wants(o, "preset")) continue;
        // Decoding alone starts from a random latent of the right shape (encoding a large image
        // would cost as much as what is measured).
        if (!latents.defined())
          latents = wants(o, "encode") || wants(o, "preset")
                        ? m.codec->encode(images)
                        : torch::randn({1, m.config.data_channels(), h, w}, at::detail::createCPUGenerator(o.seed));
        reset_peak_rss();
        // What the process held before (the models it built): the part's own peak is above it.
        const double rss_before = peak_rss_mib();
        const auto fn = [&] { enc ? m.codec->encode(images) : m.codec->decode(latents); };
        // FLOPs are counted on a separate call, except with --runs 1 (large sizes), where the
        // timed call itself is profiled: the profiler's overhead is small beside a tile's convolutions.
        double flops = 0, s = 0;
        if (o.runs > 1) {
          flops = count_flops(fn);
          s = median_seconds(fn, o.runs, device);
        } else {
          const auto start = std::chrono::steady_clock::now();
          flops = count_flops(fn);
          s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        }
        (enc ? encode_s : decode_s) = s;
        MemoryQuery q = memory_query(o);  // the autoencoder's weights: all the process holds besides
        q.weight_bytes = module_bytes(m.codec->autoencoder());
        if (po.device.is_cpu() && po.channels_last && prepacked_convolutions_enabled())
          q.prepacked_bytes = module_bytes(m.codec->autoencoder(), true);
        const MemoryEstimate est = estimate_memory(m.config, q);
        sink(BenchRecord{{"bench", part},
                         {"size", fmt::format("{}x{}", o.width, o.height)},
                         {"precision", precision},
                         {"tile", po.tile},
                         {"median_s", round_to(s, 4)},
                         {"gflop", round_to(flops / 1e9, 1)},
                         {"gflops", round_to(flops / s / 1e9, 1)},
                         {"peak_fraction", round_to(flops / s / 1e9 / peak_of(po.precision), 3)},
                         {"peak_rss_mib", round_to(peak_rss_mib(), 0)},
                         {"rss_before_mib", round_to(rss_before, 0)},
                         {"estimated_mib", round_to((enc ? est.encode : est.decode) / 1048576.0, 0)}});
      }
    }
    for (const auto& [name, stages] : wants(o, "preset") ? o.presets : decltype(o.presets){}) {
      // Seconds per image from the parts: per round an encode (latent models start each round
      // from an image), its steps and a decode; SPADE's maps are filled once per image.
      double seconds = 0;
      int64_t forwards = 0, steps = 0;
      bool paired = false;
      for (const auto& stage : stages) {
        const int64_t n = m.pipeline->denoising_steps({stage});
        const bool pair = stage.guidance != 1.0 && stage.guidance != 0.0;
        paired = paired || pair;
        steps += n;
        forwards += n * (pair ? 2 : 1);
        seconds += n * (pair ? pair_cached : unet_cached) + (m.config.autoencoder ? encode_s + decode_s : 0);
      }
      seconds += paired ? pair_first - pair_cached : unet_first - unet_cached;
      sink(BenchRecord{{"bench", "preset"},
                       {"preset", name},
                       {"size", fmt::format("{}x{}", o.width, o.height)},
                       {"precision", precision},
                       {"steps", steps},
                       {"nfe", forwards},
                       {"estimated_s_per_image", round_to(seconds, 2)},
                       {"images_per_hour", round_to(3600 / seconds, 1)}});
    }
    if (wants(o, "generate")) {
      const GenerationInputs in = generation_inputs(o, m.config);
      const MemoryEstimate est =
          estimate_memory(m.config, m.pipeline->memory_query(1, o.height, o.width, o.presets.front().second));
      reset_peak_rss();
      const auto start = std::chrono::steady_clock::now();
      const GenerationResult result = generate_once(*m.pipeline, in, o);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      sink(BenchRecord{{"bench", "generate"},
                       {"preset", o.presets.front().first},
                       {"size", fmt::format("{}x{}", o.width, o.height)},
                       {"precision", precision},
                       {"nfe", result.unet_forwards_per_image},
                       {"seconds", round_to(s, 2)},
                       {"images_per_hour", round_to(3600 / s, 1)},
                       {"spade_cache_mib", round_to(result.spade_cache_bytes / 1048576.0, 1)},
                       {"peak_rss_mib", round_to(peak_rss_mib(), 0)},
                       {"estimated_peak_mib", round_to(est.peak() / 1048576.0, 0)}});
    }
    m.pipeline.reset();
    m.codec.reset();
  }

  if (wants(o, "agreement")) {
    // The same weights and seeds in fp32 and bf16: one U-Net forward, then whole images.
    PipelineOptions fp32 = po, bf16 = po;
    fp32.precision = torch::kFloat32;
    bf16.precision = torch::kBFloat16;
    // Compare the precisions as generate runs them. The format matters beyond speed: where oneDNN
    // has no bf16 kernels, LibTorch 1.13's NCHW bf16 convolution (im2col + its bf16 GEMM) rounds its
    // sums to bf16, 10-20x the error of bf16 inputs with float sums; the channels-last path keeps them.
    fp32.channels_last = o.agreement_channels_last.value_or(false);
    bf16.channels_last = o.agreement_channels_last.value_or(true);
    Models a = build_models(o, fp32, true), b = build_models(o, bf16, true);
    const int64_t f = a.config.autoencoder ? a.config.autoencoder->ddconfig.downsampling_factor() : 1;
    const int64_t h = o.height / f, w = o.width / f;
    Tensor x = torch::randn({1, a.config.unet.in_channels, h, w}, at::detail::createCPUGenerator(o.seed)).to(device);
    Tensor y = one_hot_labels(random_layout(h, w, a.config.unet.num_labels(), o.seed + 1).unsqueeze(0),
                              a.config.unet.num_labels())
                   .to(device);
    Tensor t = torch::full({1}, 500, torch::kInt64).to(device);
    const Tensor out_a = a.unet->forward(x, t, y).to(torch::kFloat32);
    const Tensor out_b = b.unet->forward(x, t, y).to(torch::kFloat32);
    const double relative = ((out_a - out_b).norm() / out_a.norm()).item<double>();
    const GenerationInputs in = generation_inputs(o, a.config);
    const Tensor image_a = generate_once(*a.pipeline, in, o).images;
    const Tensor image_b = generate_once(*b.pipeline, in, o).images;
    sink(BenchRecord{{"bench", "agreement"},
                     {"size", fmt::format("{}x{}", o.width, o.height)},
                     {"preset", o.presets.front().first},
                     {"channels_last", fmt::format("fp32 {}, bf16 {}", fp32.channels_last, bf16.channels_last)},
                     {"unet_relative_difference", round_to(relative, 5)},
                     {"image_psnr_db", round_to(psnr_8bit(image_a, image_b), 2)}});
  }
}

std::string describe_record(const BenchRecord& r) {
  std::string line = r.value("bench", "?");
  for (auto it = r.begin(); it != r.end(); ++it) {
    if (it.key() == "bench") continue;
    line +=
        fmt::format("  {}={}", it.key(), it.value().is_string() ? it.value().get<std::string>() : it.value().dump());
  }
  return line;
}

}  // namespace iidm
