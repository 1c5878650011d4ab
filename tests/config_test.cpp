// Configs: the bundled files parse and build the published architectures; typos, wrong types and
// impossible values are errors naming the file and the key.
#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "core/state_dict.h"
#include "pipeline/model_config.h"
#include "test_util.h"

namespace iidm {
namespace {

const std::string kConfigs = std::string(IIDM_SOURCE_DIR) + "/configs/models/";

TEST(Configs, IidmBuildsThePublishedDenoiser) {
  ModelConfig c = ModelConfig::from_file(kConfigs + "iidm.json");
  ASSERT_TRUE(c.autoencoder.has_value());
  EXPECT_EQ(c.autoencoder->kind, "vq");
  EXPECT_EQ(c.unet.attention_resolutions, (std::vector<int>{4, 8, 16}));
  EXPECT_EQ(c.unet.channel_mult, (std::vector<double>{1, 1, 2, 3, 4}));
  UNetModel unet(c.unet);
  EXPECT_EQ(count_parameters(*unet), 501540358);  // the reference's count
  EXPECT_EQ(state_dict(*unet).size(), 660u);
}

TEST(Configs, EveryBundledModelConfigParses) {
  int parsed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kConfigs)) {
    const std::string path = entry.path().string();
    Json json = read_json_file(path);
    if (json.contains("unet")) {
      EXPECT_NO_THROW(ModelConfig::from_file(path)) << path;
    } else {
      ConfigReader reader(json, path);
      reader.ignore({"note"});
      EXPECT_NO_THROW(AutoencoderConfig::from_json(reader)) << path;
    }
    ++parsed;
  }
  EXPECT_GE(parsed, 6);
}

TEST(Configs, SdmAde20kMatchesCreateModel) {
  ModelConfig c = ModelConfig::from_file(kConfigs + "sdm-ade20k.json");
  EXPECT_EQ(c.unet.num_classes, 151);
  EXPECT_EQ(c.unet.attention_resolutions, (std::vector<int>{8, 16, 32}));
  EXPECT_EQ(c.unet.out_channels, 6);
  ModelConfig city = ModelConfig::from_file(kConfigs + "sdm-cityscapes.json");
  EXPECT_TRUE(city.unet.instance_edge);
  EXPECT_EQ(city.unet.num_classes, 36);
  EXPECT_EQ(city.unet.width(0), 128);  // channel_mult 0.5 at 512
}

Json iidm_json() { return read_json_file(kConfigs + "iidm.json"); }

void expect_config_error(const Json& json, std::initializer_list<std::string> fragments) {
  test::expect_error(
      [&] {
        ConfigReader reader(json, "test.json");
        ModelConfig::from_json(reader);
      },
      fragments);
}

TEST(Configs, RejectsUnknownKeysAtEveryLevel) {
  Json j = iidm_json();
  j["unet"]["create_model"]["num_chanels"] = 256;
  expect_config_error(j, {"test.json.unet.create_model", "unknown key", "num_chanels"});
  j = iidm_json();
  j["diffusion"]["steps_"] = 10;
  expect_config_error(j, {"test.json.diffusion", "steps_"});
  j = iidm_json();
  j["autoencoder"]["ddconfig"]["chmult"] = {1};
  expect_config_error(j, {"test.json.autoencoder.ddconfig", "chmult"});
  j = iidm_json();
  j["sampler"] = "ddim";
  expect_config_error(j, {"test.json", "unknown key", "sampler"});
}

TEST(Configs, RejectsWrongTypesAndImpossibleValues) {
  Json j = iidm_json();
  j["unet"]["create_model"]["num_channels"] = "256";
  expect_config_error(j, {"num_channels", "wrong type", "an integer"});
  j = iidm_json();
  j["unet"]["create_model"]["num_channels"] = 100;  // not a multiple of 32
  expect_config_error(j, {"multiple of 32"});
  j = iidm_json();
  j["unet"]["create_model"]["attention_resolutions"] = "32,x";
  expect_config_error(j, {"attention_resolutions", "not a comma-separated list"});
  j = iidm_json();
  j["diffusion"]["timestep_respacing"] = "ddim600";  // no integer stride gives 600 of 1000
  expect_config_error(j, {"ddim600"});
  j = iidm_json();
  j["diffusion"]["noise_schedule"] = "quadratic";
  expect_config_error(j, {"unknown noise_schedule 'quadratic'"});
  j = iidm_json();
  j["diffusion"]["learn_sigma"] = false;  // the U-Net still outputs 6 channels
  expect_config_error(j, {"must output 3 channels"});
  j = iidm_json();
  j["autoencoder"]["n_embed"] = 0;
  expect_config_error(j, {"n_embed"});
  j = iidm_json();
  j["autoencoder"]["embed_dim"] = 4;  // the U-Net denoises 3 channels
  expect_config_error(j, {"takes 3 channels", "has 4"});
}

TEST(Configs, UNetModelArgumentsAreValidated) {
  Json unet = {{"in_channels", 3},          {"model_channels", 32}, {"out_channels", 3}, {"num_res_blocks", 1},
               {"attention_resolutions", {3}}, {"channel_mult", {1, 2}}, {"num_classes", 4}};
  test::expect_error(
      [&] {
        ConfigReader r(unet, "u.json");
        UNetConfig::from_json(r);
      },
      {"u.json", "attention_resolutions entry 3"});
  unet["attention_resolutions"] = {2};
  unet["num_head_channels"] = 24;
  test::expect_error(
      [&] {
        ConfigReader r(unet, "u.json");
        UNetConfig::from_json(r);
      },
      {"num_head_channels 24"});
}

TEST(Configs, MissingOrBrokenFilesNameTheFile) {
  test::TempDir dir;
  test::expect_error([&] { ModelConfig::from_file(dir.file("none.json")); }, {dir.file("none.json"), "cannot open"});
  std::ofstream(dir.file("broken.json")) << "{\"unet\": ";
  test::expect_error([&] { ModelConfig::from_file(dir.file("broken.json")); }, {dir.file("broken.json"), "invalid JSON"});
}

}  // namespace
}  // namespace iidm
