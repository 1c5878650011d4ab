#pragma once
// The model side of `iidm serve`: one loaded Pipeline, generations run one at a time on a worker
// thread, requests waiting in a bounded queue. A newer request from the same client (one page)
// supersedes that client's older one, queued or running (a running one is abandoned after its
// current denoising step), so a person painting quickly is shown the map they painted last, soon,
// not a backlog. No HTTP here (serve/http_server.h speaks it); inputs arrive as tensors already
// checked against the model by check_request().
#include <torch/torch.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "pipeline/pipeline.h"

namespace iidm {

// Why a request was not answered with an image, beyond invalid input (iidm::Error).
class Superseded : public Error {
 public:
  using Error::Error;
};
class QueueFull : public Error {
 public:
  using Error::Error;
};

struct ServiceOptions {
  // Stages by preset name; `default_preset` must be one of them.
  std::map<std::string, std::vector<Stage>> presets;
  std::string default_preset;
  // The label-map size the editor paints: the model's training size (the demo's 256x192, IIDM's
  // 512x384); other sizes are accepted up to max_pixels.
  int64_t width = 256, height = 192;
  int max_queue = 4;  // waiting requests (the running one not counted); more are refused
  // The largest label map accepted, in pixels (interactive use: the model's size is the norm).
  int64_t max_pixels = 1024 * 1024;
  int threads = 0;  // intra-op threads of the worker (0: as configure_threads chooses)
  void validate() const;
};

// One generation request, before it is checked against the model.
struct EditorRequest {
  std::string client;    // who asked (one page); empty: never superseded
  torch::Tensor labels;  // [H, W] int64 class ids (ignore_label = unlabelled)
  torch::Tensor style;   // [3, H, W] in [-1, 1]: the style reference at the label map's size
  uint64_t seed = 0;
  std::string preset;        // empty: the default
  std::optional<int> steps;  // denoising steps per stage (stages that use a strength)
  std::optional<double> guidance;
};

struct EditorResult {
  std::string png;          // the image as a PNG file
  double milliseconds = 0;  // the generation itself, without queueing
  int64_t unet_forwards = 0;
  uint64_t seed = 0;
};

struct ServiceStatus {
  bool busy = false;
  int queued = 0;
  int64_t served = 0;  // requests the worker has finished, answered or failed
};

class GenerationService {
 public:
  GenerationService(Pipeline pipeline, ServiceOptions options);
  ~GenerationService();
  GenerationService(const GenerationService&) = delete;
  GenerationService& operator=(const GenerationService&) = delete;

  const Pipeline& pipeline() const { return pipeline_; }
  const ServiceOptions& options() const { return options_; }
  int64_t width() const { return options_.width; }
  int64_t height() const { return options_.height; }

  // The stages a request runs: its preset with the overrides applied (errors name the field).
  std::vector<Stage> stages_for(const EditorRequest& request) const;
  // Refuses what the model cannot take (size, label range, missing style) with a message naming
  // the field and the value (the HTTP layer answers 4xx with it); returns the stages it will run.
  std::vector<Stage> check_request(const EditorRequest& request) const;

  // Queues the request and waits for its image. Throws Superseded (a newer request of the same
  // client took its place in the queue, or arrived while it ran), QueueFull, iidm::Error for invalid input, other
  // exceptions for failures of the generation itself (the service keeps running either way).
  EditorResult generate(EditorRequest request);
  ServiceStatus status() const;

 private:
  struct Job {
    EditorRequest request;
    std::vector<Stage> stages;
    std::promise<EditorResult> promise;
  };
  void work();
  EditorResult run(const Job& job);

  Pipeline pipeline_;
  ServiceOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool busy_ = false, stopping_ = false;
  int64_t served_ = 0;
  std::thread worker_;
};

}  // namespace iidm
