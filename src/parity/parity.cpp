#include "parity/parity.h"

#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "autoencoder/autoencoder.h"
#include "core/config.h"
#include "core/error.h"
#include "core/labels.h"
#include "core/safetensors.h"
#include "core/state_dict.h"
#include "diffusion/gaussian_diffusion.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"
#include "metrics/frechet.h"
#include "pipeline/denoiser.h"
#include "postprocess/color_transfer.h"
#include "unet/unet.h"

namespace iidm {
namespace fs = std::filesystem;
using torch::Tensor;

bool ParityCaseResult::passed() const {
  if (!error.empty() || checks.empty()) return false;
  for (const auto& c : checks)
    if (!c.passed) return false;
  return true;
}

namespace {

std::string shape_mismatch(const Tensor& ours, const Tensor& expected) {
  return fmt::format("shape {} vs reference {}", fmt::join(ours.sizes(), "x"), fmt::join(expected.sizes(), "x"));
}

class CaseRunner {
 public:
  CaseRunner(std::string dir, torch::Device device) : dir_(std::move(dir)), device_(device) {}

  ParityCaseResult run() {
    result_.dir = dir_;
    try {
      Json config = read_json_file((fs::path(dir_) / "config.json").string());
      if (!config.is_object() || !config.contains("kind") || !config["kind"].is_string())
        fail("{}/config.json: no 'kind'", dir_);
      result_.kind = config["kind"].get<std::string>();
      config.erase("kind");
      config.erase("note");
      const std::string& kind = result_.kind;
      if (kind == "sdm_unet")
        run_unet(config);
      else if (kind == "autoencoder_kl" || kind == "autoencoder_vq")
        run_autoencoder(config, kind);
      else if (kind == "gaussian_diffusion")
        run_diffusion(config);
      else if (kind == "schedules")
        run_schedules();
      else if (kind == "color_transfer")
        run_color_transfer(config);
      else if (kind == "frechet_distance")
        run_frechet();
      else if (kind == "keys")
        run_keys(config);
      else
        fail("{}: unknown case kind '{}'", dir_, kind);
    } catch (const std::exception& e) {
      result_.error = e.what();
    }
    return std::move(result_);
  }

 private:
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  const SafeTensorsFile& io() {
    if (!io_) io_ = std::make_unique<SafeTensorsFile>(SafeTensorsFile::open(path("io.safetensors")));
    return *io_;
  }
  Tensor ref(const std::string& name) { return io().tensor(name).clone(); }

  // The contract: max|ours - ref| <= tol * max(1, max|ref|); tol 0 means exact. `variant` tells
  // apart checks of one reference output computed along different paths.
  void compare(const std::string& name, const Tensor& ours_in, double tol, const std::string& variant = "") {
    ParityCheck check;
    check.name = name + variant;
    Tensor expected = ref(name);
    Tensor ours = ours_in.detach().to(torch::kCPU);
    if (ours.sizes() != expected.sizes()) {
      check.detail = shape_mismatch(ours, expected);
      check.max_error = std::numeric_limits<double>::infinity();
      result_.checks.push_back(check);
      return;
    }
    Tensor e = expected.to(torch::kFloat64), o = ours.to(torch::kFloat64);
    check.max_error = expected.numel() ? (o - e).abs().max().item<double>() : 0.0;
    const double scale = expected.numel() ? std::max(1.0, e.abs().max().item<double>()) : 1.0;
    check.tolerance = tol * scale;
    check.passed = std::isfinite(check.max_error) && check.max_error <= check.tolerance;
    if (tol == 0) check.detail = "exact";
    result_.checks.push_back(check);
  }
  void add(ParityCheck check) { result_.checks.push_back(std::move(check)); }

  UNetModel load_unet(Json config, const std::string& weights) {
    ConfigReader reader(std::move(config), path("config.json"));
    UNetModel model(UNetConfig::from_json(reader));
    load_state_dict(*model, weights);
    model->to(device_);
    model->eval();
    return model;
  }

  void run_unet(const Json& config) {
    UNetModel model = load_unet(config, path("weights.safetensors"));
    const int classes = model->config().num_classes;
    const bool has_instance = io().contains("instance");
    // Our one-hot (+ edge map) from the integer maps must equal the reference's y.
    if (io().contains("label"))
      compare("y",
              one_hot_labels(ref("label"), has_instance ? classes - 1 : classes, 255,
                             has_instance ? ref("instance") : Tensor()),
              0.0);
    torch::NoGradGuard no_grad;
    Tensor x = ref("x").to(device_), t = ref("t").to(device_), y = ref("y").to(device_);
    compare("out", model->forward(x, t, y), kTolSingleEval);
    compare("out_uncond", model->forward(x, t, torch::zeros_like(y)), kTolSingleEval);
  }

  void run_autoencoder(Json config, const std::string& kind) {
    config["kind"] = kind;
    ConfigReader reader(std::move(config), path("config.json"));
    Autoencoder ae(AutoencoderConfig::from_json(reader));
    load_state_dict(*ae, path("weights.safetensors"));
    ae->to(device_);
    ae->eval();
    torch::NoGradGuard no_grad;
    Tensor x = ref("x").to(device_);
    if (ae->is_vq()) {
      Tensor h = ae->encode_raw(x);
      compare("h", h, kTolSingleEval);
      // Quantise the reference h so an index decision is not flipped by our own rounding of h.
      Quantized q = ae->quantize(ref("h").to(device_));
      compare("indices", q.indices, 0.0);
      compare("z_q", q.z_q, kTolSingleEval);
      compare("decoded", ae->decode_raw(ref("h").to(device_)), kTolSingleEval);
    } else {
      Tensor moments = ae->encode_raw(x);
      compare("moments", moments, kTolSingleEval);
      DiagonalGaussian posterior = DiagonalGaussian::from_moments(moments);
      compare("mean", posterior.mean, kTolSingleEval);
      compare("logvar", posterior.logvar, kTolSingleEval);
      compare("decoded", ae->decode_raw(posterior.mode()), kTolSingleEval);
    }
  }

  void run_diffusion(Json config) {
    const std::string unet_case = config.at("unet_case").get<std::string>();
    const double scale = config.at("guidance_scale").get<double>();
    config.erase("unet_case");
    config.erase("guidance_scale");
    const fs::path unet_dir = fs::path(dir_).parent_path() / unet_case;
    Json unet_config = read_json_file((unet_dir / "config.json").string());
    unet_config.erase("kind");
    unet_config.erase("note");
    UNetModel model = load_unet(unet_config, (unet_dir / "weights.safetensors").string());

    ConfigReader reader(config, path("config.json"));
    const DiffusionConfig diffusion_config = DiffusionConfig::from_json(reader);
    GaussianDiffusion diffusion(diffusion_config);

    torch::NoGradGuard no_grad;
    const Tensor y = ref("y").to(device_);
    const int64_t C = model->config().in_channels;

    compare("timestep_map", torch::tensor(diffusion.timestep_map(), torch::kInt64), 0.0);
    auto table = [](const std::vector<double>& v) { return torch::tensor(v, torch::kFloat64); };
    compare("betas", table(diffusion.betas()), kTolTables);
    compare("alphas_cumprod", table(diffusion.alphas_cumprod()), kTolTables);
    compare("posterior_log_variance_clipped", table(diffusion.posterior_log_variance_clipped()), kTolTables);

    // pstep_pred_xstart's tolerance, per batch item, from the case's own tables and guidance scale.
    const Tensor pstep_index = ref("pstep_t_index");
    const Tensor case_alphas_cumprod = ref("alphas_cumprod").to(torch::kFloat64);
    std::vector<double> item_alphas_cumprod;
    for (int64_t n = 0; n < pstep_index.size(0); ++n)
      item_alphas_cumprod.push_back(case_alphas_cumprod[pstep_index[n].item<int64_t>()].item<double>());
    std::vector<std::string> xstart_notes;
    const std::vector<double> xstart_tolerances = pred_xstart_tolerances(item_alphas_cumprod, scale, &xstart_notes);

    // Guidance goes through the product's own Denoiser, as `generate` runs it: cond and uncond in
    // one batched forward (its default) and in two passes (the references' way). SDM and IIDM guide
    // only when s > 1 and use the conditional pass alone otherwise, which is our s = 1 (the
    // Denoiser applies the formula for every s >= 0, see guidance.h).
    GuidanceOptions guidance;
    guidance.scale = scale > 1.0 ? scale : 1.0;
    for (const bool batched : {true, false}) {
      guidance.batched = batched;
      Denoiser denoiser({{model, 1.0}}, guidance, C);
      const ModelFn guided = denoiser.bind(y);
      const std::string variant = batched ? "" : " (two-pass)";
      {
        const Tensor x = ref("pstep_x_t").to(device_);
        PMeanVariance p;
        StepResult step = ddpm_step(diffusion, guided, x, pstep_index, true, ref("pstep_noise").to(device_), {}, &p);
        compare("pstep_mean", p.mean, kTolSingleEval, variant);
        compare("pstep_log_variance", p.log_variance, kTolSingleEval, variant);
        add(compare_per_item("pstep_pred_xstart" + variant, p.pred_xstart, ref("pstep_pred_xstart"), xstart_tolerances,
                             xstart_notes));
        compare("pstep_sample", step.sample, kTolSingleEval, variant);
      }
      {
        SampleOptions options;
        options.clip_denoised = true;
        compare("ddim_out", make_sampler("ddim")->sample(diffusion, guided, ref("ddim_x_T").to(device_), options),
                kTolSampler, variant);
      }
      {
        const int64_t start = ref("img2img_start_index").item<int64_t>();
        const Tensor x0 = ref("img2img_x0").to(device_);
        Tensor noised =
            diffusion.q_sample(x0, torch::full({x0.size(0)}, start, torch::kInt64), ref("img2img_noise").to(device_));
        if (batched) compare("img2img_x_noised", noised, kTolSingleEval);
        SampleOptions options;
        options.clip_denoised = false;
        options.first_index = static_cast<int>(start) - 1;  // the reference's own indexing
        compare("img2img_out", make_sampler("ddim")->sample(diffusion, guided, noised, options), kTolSampler, variant);
      }
    }
    {
      DiffusionConfig full = diffusion_config;
      full.timestep_respacing = "";
      GaussianDiffusion chain(full);
      // The training loss sees the conditional model alone, as train-unet does.
      ModelFn cond = [&](const Tensor& x, const Tensor& t) { return model->forward(x, t, y); };
      LossTerms terms =
          chain.training_losses(cond, ref("loss_x0").to(device_), ref("loss_t"), ref("loss_noise").to(device_));
      compare("loss_mse", terms.mse, kTolSingleEval);
      compare("loss_vb", terms.vb, kTolSingleEval);
      compare("loss_total", terms.loss, kTolSingleEval);
    }
  }

  void run_schedules() {
    for (const auto& name : io().names()) {
      auto number_after = [&](const std::string& prefix) { return std::stoi(name.substr(prefix.size())); };
      if (name.rfind("guided_linear_", 0) == 0) {
        compare(name, torch::tensor(guided_beta_schedule("linear", number_after("guided_linear_")), torch::kFloat64),
                kTolTables);
      } else if (name.rfind("guided_cosine_", 0) == 0) {
        compare(name, torch::tensor(guided_beta_schedule("cosine", number_after("guided_cosine_")), torch::kFloat64),
                kTolTables);
      } else if (name.rfind("ldm_linear_", 0) == 0) {
        // The reference note: linspace(sqrt(0.0015), sqrt(0.0205))^2.
        compare(name,
                torch::tensor(ldm_linear_beta_schedule(number_after("ldm_linear_"), 0.0015, 0.0205), torch::kFloat64),
                kTolTables);
      } else if (name.rfind("space_", 0) == 0) {
        std::string spec = name.substr(6);
        std::replace(spec.begin(), spec.end(), '_', ',');
        std::vector<int> steps = space_timesteps(1000, spec);
        compare(name, torch::tensor(std::vector<int64_t>(steps.begin(), steps.end()), torch::kInt64), 0.0);
      } else {
        add({name, 0, 0, false, "unknown schedule entry"});
      }
    }
  }

  static cv::Mat to_mat(const Tensor& hwc) {
    Tensor t = hwc.contiguous();
    return cv::Mat(static_cast<int>(t.size(0)), static_cast<int>(t.size(1)), CV_8UC3, t.data_ptr()).clone();
  }

  void run_color_transfer(const Json& config) {
    const std::string method = config.value("method", "iidm_lab");
    if (method != "iidm_lab") fail("{}: unknown colour transfer method '{}'", dir_, method);
    cv::Mat out = color_transfer_iidm_lab(to_mat(ref("reference_rgb")), to_mat(ref("source_rgb")));
    Tensor ours = torch::from_blob(out.data, {out.rows, out.cols, 3}, torch::kUInt8).clone();
    ParityCheck check;
    check.name = "out_rgb";
    Tensor diff = (ours.to(torch::kInt32) - ref("out_rgb").to(torch::kInt32)).abs();
    check.max_error = diff.max().item<int>();
    check.tolerance = 1;  // absolute, uint8 (OpenCV versions may differ by one level)
    check.passed = check.max_error <= check.tolerance;
    check.detail = fmt::format("{} of {} values differ", diff.gt(0).sum().item<int64_t>(), diff.numel());
    add(check);
  }

  static Eigen::MatrixXd to_eigen(const Tensor& t) {
    Tensor c = t.to(torch::kFloat64).contiguous();
    Eigen::MatrixXd m(c.size(0), c.size(1));
    auto acc = c.accessor<double, 2>();
    for (int64_t i = 0; i < c.size(0); ++i)
      for (int64_t j = 0; j < c.size(1); ++j) m(i, j) = acc[i][j];
    return m;
  }
  static Tensor from_eigen(const Eigen::MatrixXd& m) {
    Tensor t = torch::empty({m.rows(), m.cols()}, torch::kFloat64);
    for (int64_t i = 0; i < m.rows(); ++i)
      for (int64_t j = 0; j < m.cols(); ++j) t[i][j] = m(i, j);
    return t;
  }

  void run_frechet() {
    GaussianStats a = gaussian_stats(to_eigen(ref("features_a")));
    GaussianStats b = gaussian_stats(to_eigen(ref("features_b")));
    compare("mu_a", from_eigen(a.mu).view({-1}), kTolFrechet);
    compare("mu_b", from_eigen(b.mu).view({-1}), kTolFrechet);
    compare("sigma_a", from_eigen(a.sigma), kTolFrechet);
    compare("sigma_b", from_eigen(b.sigma), kTolFrechet);
    // Relative tolerance for the distance itself.
    const double ours = frechet_distance(a, b), expected = ref("fid").item<double>();
    ParityCheck check;
    check.name = "fid";
    check.max_error = std::abs(ours - expected);
    check.tolerance = kTolFrechet * std::abs(expected);
    check.passed = check.max_error <= check.tolerance;
    check.detail = fmt::format("ours {:.10g} reference {:.10g}", ours, expected);
    add(check);
  }

  void run_keys(Json config) {
    const std::string model_kind = config.at("model_kind").get<std::string>();
    config.erase("model_kind");
    std::shared_ptr<torch::nn::Module> model;
    if (model_kind == "sdm_unet") {
      ConfigReader reader(config, path("config.json"));
      model = UNetModel(UNetConfig::from_json(reader)).ptr();
    } else if (model_kind == "autoencoder_kl" || model_kind == "autoencoder_vq") {
      config["kind"] = model_kind;
      ConfigReader reader(config, path("config.json"));
      model = Autoencoder(AutoencoderConfig::from_json(reader)).ptr();
    } else {
      fail("{}: unknown model_kind '{}'", dir_, model_kind);
    }
    const Json expected = read_json_file(path("keys.json"));
    std::map<std::string, std::vector<int64_t>> ours;
    for (const auto& [key, tensor] : state_dict(*model)) ours[key] = tensor.sizes().vec();
    std::vector<std::string> problems;
    int64_t expected_params = 0;
    for (const auto& item : expected.items()) {
      const auto shape = item.value().get<std::vector<int64_t>>();
      int64_t n = 1;
      for (auto s : shape) n *= s;
      expected_params += n;
      auto it = ours.find(item.key());
      if (it == ours.end())
        problems.push_back("missing " + item.key());
      else if (it->second != shape)
        problems.push_back(
            fmt::format("{}: ours [{}] vs [{}]", item.key(), fmt::join(it->second, ","), fmt::join(shape, ",")));
    }
    for (const auto& [key, shape] : ours)
      if (!expected.contains(key)) problems.push_back("unexpected " + key);
    ParityCheck check;
    check.name = "keys";
    check.max_error = static_cast<double>(problems.size());
    check.passed = problems.empty();
    check.detail = fmt::format("{} tensors, {} parameters (reference {} tensors, {} parameters)", ours.size(),
                               count_parameters(*model), expected.size(), expected_params);
    for (size_t i = 0; i < problems.size() && i < 10; ++i) check.detail += "\n      " + problems[i];
    add(check);
  }

  std::string dir_;
  torch::Device device_;
  ParityCaseResult result_;
  std::unique_ptr<SafeTensorsFile> io_;
};

}  // namespace

ParityCheck compare_per_item(const std::string& name, const Tensor& ours_in, const Tensor& reference,
                             const std::vector<double>& tolerances, const std::vector<std::string>& item_notes) {
  ParityCheck check;
  check.name = name;
  const Tensor ours = ours_in.detach().to(torch::kCPU);
  if (ours.sizes() != reference.sizes() || reference.dim() == 0 ||
      static_cast<size_t>(reference.size(0)) != tolerances.size()) {
    check.max_error = std::numeric_limits<double>::infinity();
    check.detail = ours.sizes() != reference.sizes()
                       ? shape_mismatch(ours, reference)
                       : fmt::format("{} tolerances for {} batch items", tolerances.size(),
                                     reference.dim() ? reference.size(0) : 0);
    return check;
  }
  check.passed = true;
  double worst_ratio = -1;
  for (int64_t n = 0; n < reference.size(0); ++n) {
    const Tensor e = reference[n].to(torch::kFloat64), o = ours[n].to(torch::kFloat64);
    const double error = e.numel() ? (o - e).abs().max().item<double>() : 0.0;
    const double scale = e.numel() ? std::max(1.0, e.abs().max().item<double>()) : 1.0;
    const double tolerance = tolerances[n] * scale;
    const bool ok = std::isfinite(error) && error <= tolerance;
    check.passed = check.passed && ok;
    // The item nearest its limit stands for the check (an infinite ratio for NaN errors).
    const double ratio = std::isfinite(error) ? error / tolerance : std::numeric_limits<double>::infinity();
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      check.max_error = error;
      check.tolerance = tolerance;
    }
    check.detail +=
        fmt::format("\n      item {}: max|err| {:.4g} tol {:.4g}{}{}", n, error, tolerance,
                    static_cast<size_t>(n) < item_notes.size() ? "  " + item_notes[n] : "", ok ? "" : "  FAIL");
  }
  check.detail = "per item (worst shown)" + check.detail;
  return check;
}

std::vector<double> pred_xstart_tolerances(const std::vector<double>& alphas_cumprod_n, double guidance_scale,
                                           std::vector<std::string>* notes) {
  std::vector<double> tolerances;
  if (notes) notes->clear();
  const double guidance_factor = std::max(1.0, 2.0 * guidance_scale - 1.0);
  for (const double a : alphas_cumprod_n) {
    if (!(a > 0 && a <= 1)) fail("parity: alphas_cumprod {} is outside (0, 1]", a);
    const double x0_factor = std::max(1.0, std::sqrt(1.0 / a - 1.0));
    tolerances.push_back(kTolSingleEval * x0_factor * guidance_factor);
    if (notes)
      notes->push_back(fmt::format("= 1e-4 x max(1,|ref|) x {:.4g} (sqrt(1/a-1), a={:.6g}) x {:.4g} (2s-1)", x0_factor,
                                   a, guidance_factor));
  }
  return tolerances;
}

ParityCaseResult run_parity_case(const std::string& dir, const torch::Device& device) {
  return CaseRunner(dir, device).run();
}

}  // namespace iidm
