// The segmentation network behind mask accuracy, and the colour-histogram metric: shapes at any
// size, training lifts pixel accuracy, resuming is exact, the metrics behave.
#include <fstream>

#include "core/fs.h"
#include "core/image.h"
#include "data/landscape.h"
#include "metrics/histogram.h"
#include "test_util.h"
#include "train/segmenter_trainer.h"

namespace iidm {
namespace {

LabelledImages labelled(int count, int first, int W = 32, int H = 24) {
  std::vector<torch::Tensor> xs, ys;
  for (int i = 0; i < count; ++i) {
    Landscape l = generate_landscape(first + i, W, H);
    xs.push_back(from_rgb8(l.image));
    ys.push_back(torch::from_blob(l.labels.data, {H, W}, torch::kUInt8).clone());
  }
  return {torch::stack(xs), torch::stack(ys)};
}

SegmenterConfig small_segmenter() {
  SegmenterConfig c;
  c.channels = 16;
  c.channel_mult = {1, 2, 2};
  c.blocks = 1;
  return c;
}

TEST(Segmenter, LogitsMatchAnyInputSize) {
  Segmenter model(small_segmenter());
  torch::NoGradGuard no_grad;
  EXPECT_EQ(model->forward(torch::zeros({2, 3, 22, 30})).sizes(), (std::vector<int64_t>{2, 29, 22, 30}));
  EXPECT_EQ(model->predict(torch::zeros({1, 3, 24, 32})).sizes(), (std::vector<int64_t>{1, 24, 32}));
}

TEST(Segmenter, TrainingLiftsPixelAccuracyAndResumesExactly) {
  test::TempDir dir;
  SegmenterTrainConfig c;
  c.batch_size = 4;
  c.adam.lr = 3e-3;
  c.seed = 2;
  const LabelledImages train = labelled(16, 100), held_out = labelled(8, 900);
  SegmenterTrainer trainer(small_segmenter(), c, train);
  const double before = evaluate_segmenter(trainer.model(), held_out);
  for (int i = 0; i < 60; ++i) trainer.train_step();
  const double after = evaluate_segmenter(trainer.model(), held_out);
  EXPECT_GT(after, before + 0.2) << "before " << before << " after " << after;
  EXPECT_GT(after, 0.6);

  SegmenterTrainer a(small_segmenter(), c, train), b(small_segmenter(), c, train);
  for (int i = 0; i < 4; ++i) a.train_step();
  for (int i = 0; i < 2; ++i) b.train_step();
  b.save_checkpoint(dir.file("ckpt.safetensors"));
  SegmenterTrainer resumed(small_segmenter(), c, train);
  resumed.resume(dir.file("ckpt.safetensors"));
  for (int i = 0; i < 2; ++i) resumed.train_step();
  a.export_weights(dir.file("a.safetensors"));
  resumed.export_weights(dir.file("b.safetensors"));
  EXPECT_EQ(read_file(dir.file("a.safetensors")), read_file(dir.file("b.safetensors")));
  // The exported weights load strictly with their config.
  std::ofstream(dir.file("seg.json")) << small_segmenter().to_json().dump();
  Segmenter loaded = load_segmenter(dir.file("seg.json"), dir.file("a.safetensors"));
  EXPECT_EQ(loaded->config().num_classes, 29);
}

TEST(Metrics, PixelAccuracyIgnoresUnlabelledPixels) {
  torch::Tensor labels = torch::tensor({0, 1, 2, 255}).view({1, 4});
  torch::Tensor predicted = torch::tensor({0, 1, 5, 7}).view({1, 4});
  EXPECT_DOUBLE_EQ(pixel_accuracy(predicted, labels), 2.0 / 3.0);
  test::expect_error([&] { pixel_accuracy(predicted, labels.view({4})); }, {"shape"});
}

TEST(Metrics, HistogramCorrelationPrefersTheSamePalette) {
  torch::manual_seed(0);
  torch::Tensor warm =
      torch::stack({torch::rand({16, 16}) * 0.4 + 0.5, torch::rand({16, 16}) * 0.4, torch::rand({16, 16}) * 0.3 - 0.9});
  torch::Tensor warm2 =
      torch::stack({torch::rand({16, 16}) * 0.4 + 0.5, torch::rand({16, 16}) * 0.4, torch::rand({16, 16}) * 0.3 - 0.9});
  torch::Tensor cold =
      torch::stack({torch::rand({16, 16}) * 0.3 - 0.9, torch::rand({16, 16}) * 0.4, torch::rand({16, 16}) * 0.4 + 0.5});
  EXPECT_NEAR(color_histogram_correlation(warm, warm), 1.0, 1e-12);
  EXPECT_GT(color_histogram_correlation(warm, warm2), 0.8);
  EXPECT_LT(color_histogram_correlation(warm, cold), 0.5);
}

}  // namespace
}  // namespace iidm
