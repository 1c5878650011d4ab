// The generation pipeline on tiny random models: each plug-in on and off, determinism, editing
// that keeps the unedited region exactly, and the iidm-paper preset's schedule.
#include <torch/torch.h>

#include "pipeline/pipeline.h"
#include "tiny_models.h"

namespace iidm {
namespace {

struct Fixture {
  test::TempDir dir;
  test::TinyModel latent = test::write_tiny_model(dir, true), pixel = test::write_tiny_model(dir, false);

  Pipeline load(bool is_latent, bool ensemble = false, std::vector<double> weights = {}, PipelineOptions options = {}) {
    const auto& m = is_latent ? latent : pixel;
    ModelFiles f;
    f.config = m.config;
    f.unets = {m.unet};
    if (ensemble) f.unets.push_back(m.unet2);
    f.unet_weights = weights;
    f.autoencoder = m.autoencoder;
    return Pipeline::load(f, options);
  }
};

GenerationItem item(uint64_t seed = 1, int64_t H = 24, int64_t W = 32) {
  GenerationItem it;
  it.name = "item";
  it.labels = torch::zeros({H, W}, torch::kInt64);
  it.labels.narrow(0, 0, H / 2).fill_(1);
  it.labels.narrow(0, H / 2, H / 2).fill_(5);
  torch::manual_seed(42);
  it.start = torch::rand({3, H, W}) * 2 - 1;
  it.seed = seed;
  return it;
}

Stage stage(double strength, const std::string& transfer = "none", const std::string& sampler = "ddim") {
  Stage s;
  s.respacing = "ddim10";
  s.strength = strength;
  s.guidance = 2.0;
  s.sampler = parse_sampler(sampler);
  s.color_transfer = parse_color_transfer(transfer);
  return s;
}

bool same(const torch::Tensor& a, const torch::Tensor& b) { return torch::equal(a, b); }

TEST(Generation, DeterministicPerSeedAndIndependentOfBatchMates) {
  Fixture f;
  Pipeline p = f.load(true);
  auto a = p.generate({item(1)}, {stage(0.6)}).images;
  auto b = p.generate({item(1)}, {stage(0.6)}).images;
  EXPECT_TRUE(same(a, b));
  EXPECT_FALSE(same(a, p.generate({item(2)}, {stage(0.6)}).images));
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{1, 3, 24, 32}));
  // An image's noise comes from its own seed: batch mates do not change it (up to conv rounding).
  auto pair = p.generate({item(1), item(2)}, {stage(0.6)}).images;
  EXPECT_LT((pair[0] - a[0]).abs().max().item<double>(), 1e-4);
}

TEST(Generation, TheEncodeCacheAnswersARepeatedReferenceExactly) {
  Fixture f;
  PipelineOptions cached;
  cached.encode_cache = 2;
  Pipeline plain = f.load(true), memo = f.load(true, false, {}, cached);
  // Three references; the cache holds two, so the first is encoded again after the third.
  std::vector<torch::Tensor> refs;
  for (int i = 0; i < 3; ++i) refs.push_back(torch::rand({1, 3, 24, 32}) * 2 - 1);
  const auto z0 = memo.encode(refs[0]);
  EXPECT_TRUE(same(z0, plain.encode(refs[0])));
  EXPECT_TRUE(same(memo.encode(refs[0].clone()), z0)) << "same pixels, another tensor: a hit";
  // What the cache returns is the caller's: changing it does not change the next answer.
  memo.encode(refs[0]).add_(1);
  EXPECT_TRUE(same(memo.encode(refs[0]), z0));
  // The cache keys on the pixels, not the tensor: an in-place change of the caller's image is a miss.
  torch::Tensor changing = refs[1].clone();
  const auto z1 = memo.encode(changing);
  changing.mul_(0.5);
  EXPECT_TRUE(same(memo.encode(changing), plain.encode(changing)));
  EXPECT_FALSE(same(memo.encode(changing), z1));
  EXPECT_TRUE(same(memo.encode(refs[2]), plain.encode(refs[2])));
  EXPECT_TRUE(same(memo.encode(refs[0]), z0)) << "evicted and encoded again: the same latent";
  // Whole generations: cached and uncached pipelines give the same images, twice.
  for (int round = 0; round < 2; ++round)
    EXPECT_TRUE(same(memo.generate({item(1)}, {stage(0.6)}).images, plain.generate({item(1)}, {stage(0.6)}).images));
  PipelineOptions bad;
  bad.encode_cache = -1;
  EXPECT_THROW(f.load(true, false, {}, bad), Error);
}

TEST(Generation, EachPluginChangesTheResultWhenOn) {
  Fixture f;
  Pipeline p = f.load(true);
  auto one_round = p.generate({item()}, {stage(0.6)});
  auto refined = p.generate({item()}, {stage(0.6), stage(0.3)});
  auto refined_ct = p.generate({item()}, {stage(0.6), stage(0.3, "iidm-lab")});
  auto refined_hist = p.generate({item()}, {stage(0.6), stage(0.3, "histogram")});
  EXPECT_FALSE(same(one_round.images, refined.images));
  EXPECT_FALSE(same(refined.images, refined_ct.images));
  EXPECT_FALSE(same(refined_ct.images, refined_hist.images));
  EXPECT_EQ(refined.stage_timesteps.size(), 2u);
  // Ensemble: a second, different model changes the output; weight 0 on it changes nothing.
  Pipeline ens = f.load(true, true);
  EXPECT_FALSE(same(one_round.images, ens.generate({item()}, {stage(0.6)}).images));
  Pipeline first_only = f.load(true, true, {1.0, 0.0});
  EXPECT_LT((first_only.generate({item()}, {stage(0.6)}).images - one_round.images).abs().max().item<double>(), 1e-5);
  // Guidance off vs on.
  Stage unguided = stage(0.6);
  unguided.guidance = 1.0;
  EXPECT_FALSE(same(one_round.images, p.generate({item()}, {unguided}).images));
  EXPECT_EQ(one_round.unet_forwards_per_image, 2 * 6);  // int(10 * 0.6) = 6 steps, 2 forwards each
}

TEST(Generation, StrengthFollowsDiffusersAndReferenceIndexing) {
  Fixture f;
  Pipeline p = f.load(true);
  auto r = p.generate({item()}, {stage(0.6)});
  // ddim10 chain = 0, 100, ..., 900: int(10 * 0.6) = 6 steps from index 5 (t = 500).
  EXPECT_EQ(r.stage_timesteps[0], (std::vector<int64_t>{500, 400, 300, 200, 100, 0}));
  Stage reference = stage(1.0);
  reference.start_index = 6;  // noised at index 6 (t = 600), first step at index 5
  EXPECT_EQ(p.generate({item()}, {reference}).stage_timesteps[0], (std::vector<int64_t>{500, 400, 300, 200, 100, 0}));
  EXPECT_EQ(plan_stage(reference, 10).noise_index, 6);
  EXPECT_EQ(plan_stage(stage(0.6), 10).noise_index, 5);
  test::expect_error([&] { plan_stage(stage(0.05), 10); }, {"zero steps"});
}

TEST(Generation, IidmPaperPresetVisitsTheReferenceTimesteps) {
  Fixture f;
  Pipeline p = f.load(true);
  Preset preset = Preset::from_file(std::string(IIDM_SOURCE_DIR) + "/configs/presets/iidm-paper.json");
  ASSERT_EQ(preset.stages.size(), 3u);
  auto r = p.generate({item(1, 8, 8)}, preset.stages);
  ASSERT_EQ(r.stage_timesteps.size(), 3u);
  // Stage 1: ddim500 (stride 2), noised at index 300 (t = 600), steps 299..0 -> t = 598, 596, ..., 0.
  std::vector<int64_t> s1, s2, s3;
  for (int i = 299; i >= 0; --i) s1.push_back(2 * i);
  for (int i = 319; i >= 0; --i) s2.push_back(2 * i);
  for (int i = 19; i >= 0; --i) s3.push_back(20 * i);
  EXPECT_EQ(r.stage_timesteps[0], s1);
  EXPECT_EQ(r.stage_timesteps[1], s2);
  EXPECT_EQ(r.stage_timesteps[2], s3);
  EXPECT_EQ(r.denoising_steps, 640);
  EXPECT_EQ(r.unet_forwards_per_image, 1280);
  EXPECT_EQ(to_string(preset.stages[1].color_transfer), "iidm-lab");
  EXPECT_DOUBLE_EQ(preset.stages[0].guidance, 3.5);
  EXPECT_DOUBLE_EQ(preset.stages[2].guidance, 3.7);
}

TEST(Generation, EditingKeepsTheUneditedRegionExactly) {
  Fixture f;
  for (bool is_latent : {false, true}) {
    Pipeline p = f.load(is_latent);
    GenerationItem it = item();
    // The start image as it would come from an 8-bit file.
    it.start = (((it.start + 1) * 127.5).round() / 127.5 - 1);
    it.edit_mask = torch::zeros({24, 32});
    it.edit_mask.narrow(1, 8, 16).narrow(0, 4, 12).fill_(1);
    Stage s = stage(1.0);
    auto out = p.generate({it}, {s}).images[0];
    torch::Tensor keep = (it.edit_mask == 0).unsqueeze(0).expand({3, 24, 32});
    EXPECT_TRUE(torch::equal(out.masked_select(keep), it.start.masked_select(keep))) << "latent " << is_latent;
    torch::Tensor edit = (it.edit_mask == 1).unsqueeze(0).expand({3, 24, 32});
    EXPECT_GT((out.masked_select(edit) - it.start.masked_select(edit)).abs().max().item<double>(), 0.01);
  }
}

TEST(Generation, PixelModelFromPureNoiseAndSparseLabels) {
  Fixture f;
  Pipeline p = f.load(false);
  GenerationItem it = item();
  it.start = torch::Tensor();
  it.labels.narrow(1, 0, 8).fill_(255);  // unlabelled columns (sparse layout)
  auto r = p.generate({it}, {stage(1.0, "none", "ddpm")});
  EXPECT_EQ(r.images.sizes(), (std::vector<int64_t>{1, 3, 24, 32}));
  EXPECT_LE(r.images.abs().max().item<double>(), 1.0);
  test::expect_error([&] { p.generate({it}, {stage(0.5)}); }, {"no start image"});
  it.labels[0][0] = 29;
  test::expect_error([&] { p.generate({it}, {stage(1.0)}); }, {"value 29"});
}

TEST(Generation, RejectsSizesTheModelCannotTake) {
  Fixture f;
  Pipeline p = f.load(true);
  test::expect_error([&] { p.generate({item(1, 22, 32)}, {stage(0.6)}); }, {"multiple of 4"});
}

}  // namespace
}  // namespace iidm
