#include "train/segmenter_trainer.h"

#include "core/error.h"
#include "core/progress.h"
#include "core/runtime.h"
#include "core/seed.h"
#include "core/state_dict.h"
#include "data/crops.h"
#include "data/dataset.h"
#include "train/checkpoint.h"

namespace iidm {
using torch::Tensor;

void SegmenterTrainConfig::validate() const {
  if (batch_size < 1) fail("segmenter training: batch_size must be positive, got {}", batch_size);
  if (steps < 0) fail("segmenter training: steps must be >= 0, got {}", steps);
  if (crop < 0) fail("segmenter training: crop must be >= 0, got {}", crop);
  if (!(adam.lr > 0)) fail("segmenter training: lr must be positive, got {}", adam.lr);
}

Json SegmenterTrainConfig::to_json() const {
  return Json{{"batch_size", batch_size},
              {"steps", steps},
              {"crop", crop},
              {"lr", adam.lr},
              {"weight_decay", adam.weight_decay},
              {"ignore_label", ignore_label},
              {"bf16", bf16},
              {"seed", seed}};
}

LabelledImages load_labelled_images(const std::string& root, int width, int height, int num_classes) {
  const auto pairs = list_landscape_pairs(root);
  std::vector<Tensor> images, labels;
  ProgressBar bar("reading", static_cast<int64_t>(pairs.size()));
  for (const auto& p : pairs) {
    Sample s = load_sample(p, width, height, false, num_classes);
    images.push_back(s.image);
    labels.push_back(s.labels.to(torch::kUInt8));
    bar.update(static_cast<int64_t>(images.size()));
  }
  bar.finish();
  return {torch::stack(images), torch::stack(labels)};
}

SegmenterTrainer::SegmenterTrainer(SegmenterConfig model_config, SegmenterTrainConfig config, LabelledImages data,
                                   torch::Device device)
    : model_config_(std::move(model_config)), config_(config), data_(std::move(data)), device_(device) {
  config_.validate();
  model_config_.validate();
  if (data_.images.dim() != 4 || data_.images.size(0) == 0 || data_.labels.dim() != 3 ||
      data_.labels.size(0) != data_.images.size(0) || data_.labels.size(1) != data_.images.size(2) ||
      data_.labels.size(2) != data_.images.size(3))
    fail("segmenter training: images {} and labels {} do not match", fmt::join(data_.images.sizes(), "x"),
         fmt::join(data_.labels.sizes(), "x"));
  if (config_.crop > data_.images.size(2) || config_.crop > data_.images.size(3))
    fail("segmenter training: crop {} is larger than the images", config_.crop);
  torch::manual_seed(config_.seed);
  model_ = Segmenter(model_config_);
  model_->to(device_);
  model_->train();
  params_ = model_->parameters();
  optimizer_ = std::make_unique<AdamW>(params_, config_.adam);
}

double SegmenterTrainer::train_step() {
  auto gen = at::detail::createCPUGenerator(derive_seed(config_.seed, "seg-step:" + std::to_string(step_)));
  Tensor index = torch::randint(data_.images.size(0), {config_.batch_size}, gen, torch::kInt64);
  const auto crops = random_crops({data_.images, data_.labels}, index, config_.crop, /*flip=*/true, gen);
  Tensor x = crops[0].to(device_), y = crops[1].to(torch::kInt64).to(device_);
  Tensor loss;
  {
    AutocastGuard autocast(device_, config_.bf16);
    Tensor logits = model_->forward(x).to(torch::kFloat32);
    loss = torch::nn::functional::cross_entropy(
        logits, y, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(config_.ignore_label));
  }
  optimizer_->zero_grad();
  loss.backward();
  optimizer_->step();
  ++step_;
  return loss.item<double>();
}

namespace {
constexpr const char* kSegmenterCheckpointFormat = "iidm-segmenter-train-checkpoint-1";
}

void SegmenterTrainer::save_checkpoint(const std::string& path) const {
  CheckpointWriter w(kSegmenterCheckpointFormat);
  w.add_module("model.", *model_);
  w.add_optimizer("", parameter_names(*model_), *optimizer_);
  w.set("step", std::to_string(step_));
  w.set("seed", std::to_string(config_.seed));
  w.set("train_config", config_.to_json().dump());
  w.set("segmenter_config", model_config_.to_json().dump());
  w.write(path);
}

void SegmenterTrainer::resume(const std::string& path) {
  CheckpointReader r(path, kSegmenterCheckpointFormat);
  r.require_seed(config_.seed);
  r.load_module("model.", *model_);
  r.load_optimizer("", parameter_names(*model_), *optimizer_);
  step_ = r.meta_int("step");
}

void SegmenterTrainer::export_weights(const std::string& path) const {
  save_state_dict(*model_, path, false,
                  {{"step", std::to_string(step_)}, {"segmenter_config", model_config_.to_json().dump()}});
}

double evaluate_segmenter(Segmenter& model, const LabelledImages& data, torch::Device device, int64_t ignore_label) {
  const bool was_training = model->is_training();
  model->eval();
  int64_t correct = 0, total = 0;
  for (int64_t i = 0; i < data.images.size(0); i += 8) {
    const int64_t n = std::min<int64_t>(8, data.images.size(0) - i);
    Tensor predicted = model->predict(data.images.narrow(0, i, n).to(device)).cpu();
    Tensor labels = data.labels.narrow(0, i, n).to(torch::kInt64);
    Tensor valid = labels != ignore_label;
    correct += ((predicted == labels) & valid).sum().item<int64_t>();
    total += valid.sum().item<int64_t>();
  }
  model->train(was_training);
  return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0;
}

}  // namespace iidm
