#include "serve/generation_service.h"

#include <chrono>
#include <cmath>

#include "core/image.h"
#include "core/labels.h"
#include "core/runtime.h"

namespace iidm {
using torch::Tensor;

void ServiceOptions::validate() const {
  if (presets.empty()) fail("serve: no preset to generate with");
  if (!presets.count(default_preset))
    fail("serve: the default preset '{}' is not among the loaded ones", default_preset);
  if (max_queue < 1) fail("serve: the queue must hold at least one request, got {}", max_queue);
  if (max_pixels < 1) fail("serve: max_pixels must be positive, got {}", max_pixels);
  if (width < 1 || height < 1 || width * height > max_pixels)
    fail("serve: size {}x{} must be positive and within max_pixels ({})", width, height, max_pixels);
}

GenerationService::GenerationService(Pipeline pipeline, ServiceOptions options)
    : pipeline_(std::move(pipeline)), options_(std::move(options)) {
  options_.validate();
  const int multiple = pipeline_.size_multiple();
  if (options_.width % multiple || options_.height % multiple)
    fail("serve: size {}x{} must be a multiple of {} on both sides for this model", options_.width, options_.height,
         multiple);
  for (const auto& [name, stages] : options_.presets) {
    try {
      pipeline_.check_stages(stages);
    } catch (const Error& e) {
      fail("preset '{}': {}", name, e.what());
    }
  }
  worker_ = std::thread([this] { work(); });
}

GenerationService::~GenerationService() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    for (auto& job : queue_) job->promise.set_exception(std::make_exception_ptr(Error("the server is shutting down")));
    queue_.clear();
  }
  wake_.notify_all();
  worker_.join();
}

std::vector<Stage> GenerationService::stages_for(const EditorRequest& request) const {
  const std::string& name = request.preset.empty() ? options_.default_preset : request.preset;
  const auto found = options_.presets.find(name);
  if (found == options_.presets.end()) {
    std::vector<std::string> names;
    for (const auto& [known, stages] : options_.presets) names.push_back(known);
    fail("preset: unknown preset '{}' (this server has: {})", name, fmt::join(names, ", "));
  }
  std::vector<Stage> stages = found->second;
  if (request.guidance) {
    if (!std::isfinite(*request.guidance) || *request.guidance < 0 || *request.guidance > 20)
      fail("guidance: {} is outside 0..20", *request.guidance);
    for (auto& stage : stages) stage.guidance = *request.guidance;
  }
  if (request.steps) {
    const int steps = *request.steps;
    if (steps < 1 || steps > 50) fail("steps: {} is outside 1..50", steps);
    for (auto& stage : stages) {
      if (stage.start_index >= 0)
        fail("steps: preset '{}' starts its rounds at fixed chain indices (start_index); it cannot take a step count",
             name);
      // A chain of K evenly spaced steps ("K": guided-diffusion's section respacing, valid for every
      // K) on which int(K * strength) = steps, as plan_stage counts them.
      int chain = static_cast<int>(std::ceil(steps / stage.strength));
      while (chain > 1 && static_cast<int>((chain - 1) * stage.strength) >= steps) --chain;
      while (static_cast<int>(chain * stage.strength) < steps) ++chain;
      stage.respacing = std::to_string(chain);
    }
  }
  return stages;
}

std::vector<Stage> GenerationService::check_request(const EditorRequest& request) const {
  const Tensor& labels = request.labels;
  if (!labels.defined() || labels.dim() != 2) fail("mask: expected one label map");
  const int64_t H = labels.size(0), W = labels.size(1), multiple = pipeline_.size_multiple();
  if (H * W > options_.max_pixels)
    fail("mask: {}x{} is {} pixels, more than this server takes ({}; the model's size is {}x{})", W, H, H * W,
         options_.max_pixels, width(), height());
  if (H % multiple || W % multiple)
    fail("mask: {}x{} is not a multiple of {} on both sides (the model's size is {}x{})", W, H, multiple, width(),
         height());
  check_label_range(labels, pipeline_.config().unet.num_labels(), pipeline_.options().ignore_label, "mask");
  if (pipeline_.latent() && !request.style.defined()) fail("style: missing (this model needs a style reference)");
  if (request.style.defined() && (request.style.dim() != 3 || request.style.size(0) != 3 ||
                                  request.style.size(1) != H || request.style.size(2) != W))
    fail("style: expected a 3x{}x{} image, got {}", H, W, fmt::join(request.style.sizes(), "x"));
  std::vector<Stage> stages = stages_for(request);
  pipeline_.check_memory(1, H, W, stages, "mask");
  return stages;
}

EditorResult GenerationService::generate(EditorRequest request) {
  auto job = std::make_shared<Job>();
  job->stages = check_request(request);
  job->request = std::move(request);
  std::future<EditorResult> result = job->promise.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) fail("the server is shutting down");
    if (!job->request.client.empty()) {
      for (auto it = queue_.begin(); it != queue_.end();) {
        if ((*it)->request.client == job->request.client) {
          (*it)->promise.set_exception(
              std::make_exception_ptr(Superseded("superseded by a newer request from the same page")));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (static_cast<int>(queue_.size()) >= options_.max_queue)
      throw QueueFull(fmt::format("the queue is full ({} requests waiting); try again shortly", queue_.size()));
    queue_.push_back(job);
  }
  wake_.notify_one();
  return result.get();
}

ServiceStatus GenerationService::status() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {busy_, static_cast<int>(queue_.size()), served_};
}

void GenerationService::work() {
  // Intra-op threads (OpenMP's count) and the flush-to-zero mode are per thread: set them here.
  configure_threads(options_.threads);
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = queue_.front();
      queue_.pop_front();
      busy_ = true;
    }
    // A failure fails this request only: the worker goes on with the next one.
    EditorResult result;
    std::exception_ptr error;
    try {
      result = run(*job);
    } catch (...) {
      error = std::current_exception();
    }
    // The count is updated before the answer is handed over, so that whoever receives it sees its
    // request counted in status().
    {
      std::lock_guard<std::mutex> lock(mutex_);
      busy_ = false;
      ++served_;
    }
    if (error)
      job->promise.set_exception(error);
    else
      job->promise.set_value(std::move(result));
  }
}

EditorResult GenerationService::run(const Job& job) {
  const auto start = std::chrono::steady_clock::now();
  GenerationItem item;
  item.name = "request";
  item.labels = job.request.labels;
  item.start = job.request.style;
  item.seed = job.request.seed;
  // A newer request of this page waiting in the queue makes this one's image worthless: stop at
  // the next step boundary rather than make the newer one wait for the whole run.
  const auto abandon_if_superseded = [&](int64_t done, int64_t total) {
    if (job.request.client.empty() || done == total) return;
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& queued : queue_)
      if (queued->request.client == job.request.client)
        throw Superseded(fmt::format(
            "superseded by a newer request from the same page (abandoned after denoising step {} of {})", done, total));
  };
  const GenerationResult generated = pipeline_.generate({item}, job.stages, abandon_if_superseded);
  EditorResult result;
  result.png = encode_png(generated.images[0]);
  result.milliseconds = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  result.unet_forwards = generated.unet_forwards_per_image;
  result.seed = job.request.seed;
  return result;
}

}  // namespace iidm
