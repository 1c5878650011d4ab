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
  Json unet = {{"in_channels", 3},    {"model_channels", 32},         {"out_channels", 3},
               {"num_res_blocks", 1}, {"attention_resolutions", {3}}, {"channel_mult", {1, 2}},
               {"num_classes", 4}};
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
  test::expect_error([&] { ModelConfig::from_file(dir.file("broken.json")); },
                     {dir.file("broken.json"), "invalid JSON"});
}

// The field-list helpers of core/config.h on a config of their own: defaults, required keys,
// conditional writing, enums by name, lists of sections, comparison.
enum class Shade { kLight, kDark };

struct Swatch {
  std::string name;
  double weight = 1.0;

  template <class Self, class Field>
  static void fields(Self& c, Field&& field) {
    field("name", c.name, kRequired);
    field("weight", c.weight);
  }
  static Swatch from_json(ConfigReader& reader) {
    Swatch s;
    read_fields(reader, s);
    reader.finish();
    return s;
  }
  Json to_json() const { return write_fields(*this); }
};

struct ShadeConfig {
  int size = 3;
  Shade shade = Shade::kLight;
  std::string label;
  std::vector<Swatch> swatches;

  template <class Self, class Field>
  static void fields(Self& c, Field&& field) {
    field("size", c.size, kRequired);
    field("shade", c.shade, shade_names());
    field("label", c.label, written_if(!c.label.empty()));
    field("swatches", c.swatches);
  }
  static const EnumNames<Shade>& shade_names() {
    static const EnumNames<Shade> names{{"light", Shade::kLight}, {"dark", Shade::kDark}, {"black", Shade::kDark}};
    return names;
  }
};

ShadeConfig read_shade(const Json& json) {
  ConfigReader reader(json, "shade.json");
  ShadeConfig c;
  read_fields(reader, c);
  reader.finish();
  return c;
}

TEST(Configs, FieldListsReadWriteAndCompare) {
  ShadeConfig c = read_shade({{"size", 5}});
  EXPECT_EQ(c.size, 5);
  EXPECT_EQ(c.shade, Shade::kLight);
  EXPECT_EQ(write_fields(c), (Json{{"size", 5}, {"shade", "light"}, {"swatches", Json::array()}}));
  c = read_shade({{"size", 5}, {"shade", "black"}, {"label", "x"}});
  EXPECT_EQ(c.shade, Shade::kDark);
  EXPECT_EQ(write_fields(c), (Json{{"size", 5}, {"shade", "dark"}, {"label", "x"}, {"swatches", Json::array()}}))
      << "a value's first name";
  ShadeConfig d = c;
  EXPECT_TRUE(same_fields(c, d));
  d.label = "y";
  EXPECT_FALSE(same_fields(c, d));
  d = c;
  d.shade = Shade::kLight;
  EXPECT_FALSE(same_fields(c, d));

  const Json swatches = Json::array({{{"name", "a"}}, {{"name", "b"}, {"weight", 2.5}}});
  c = read_shade({{"size", 1}, {"swatches", swatches}});
  ASSERT_EQ(c.swatches.size(), 2u);
  EXPECT_EQ(c.swatches[0].weight, 1.0);
  EXPECT_EQ(c.swatches[1].name, "b");
  EXPECT_EQ(c.swatches[1].weight, 2.5);
  EXPECT_EQ(write_fields(c).at("swatches"),
            (Json::array({{{"name", "a"}, {"weight", 1.0}}, {{"name", "b"}, {"weight", 2.5}}})));
  d = c;
  EXPECT_TRUE(same_fields(c, d));
  d.swatches[1].weight = 2.0;
  EXPECT_FALSE(same_fields(c, d));
  d.swatches.pop_back();
  EXPECT_FALSE(same_fields(c, d));

  test::expect_error([] { read_shade({{"shade", "dark"}}); }, {"shade.json", "missing required key 'size'"});
  test::expect_error(
      [] {
        read_shade({{"size", 1}, {"swatches", {{"name", "a"}}}});
      },
      {"shade.json", "'swatches' must be a list"});
  test::expect_error(
      [] {
        read_shade({{"size", 1}, {"swatches", Json::array({{{"name", "a"}}, {{"nmae", "b"}}})}});
      },
      {"shade.json.swatches[1]", "missing required key 'name'"});
  test::expect_error(
      [] {
        read_shade({{"size", 1}, {"shade", "grey"}});
      },
      {"shade.json", "'shade'", "'grey'", "light, dark, black"});
  test::expect_error(
      [] {
        read_shade({{"size", 1}, {"shade", 2}});
      },
      {"shade.json", "'shade'", "wrong type", "a string"});
  test::expect_error([] { read_shade({{"size", "1"}}); }, {"shade.json", "'size'", "wrong type", "an integer"});
  test::expect_error(
      [] {
        read_shade({{"size", 1}, {"shdae", "dark"}});
      },
      {"shade.json", "unknown key 'shdae'", "known keys: label, shade, size, swatches"});
}

TEST(Configs, WrittenConfigsReadBackEqual) {
  // The U-Net of a create_model config is written as UNetModel's arguments; use_fp16 (accepted,
  // without effect) only when set, so that configs without it keep their text.
  ModelConfig c = ModelConfig::from_file(kConfigs + "sdm-ade20k.json");
  EXPECT_TRUE(c.unet.use_fp16);
  const Json unet = c.unet.to_json();
  EXPECT_EQ(unet.at("use_fp16"), true);
  EXPECT_FALSE(unet.contains("use_checkpoint"));
  EXPECT_EQ(unet.at("attention_resolutions"), (std::vector<int>{8, 16, 32}));
  ConfigReader r(unet, "unet.json");
  EXPECT_TRUE(same_fields(UNetConfig::from_json(r), c.unet));
  // Fields that mean nothing in a configuration are left out: n_embed of a KL autoencoder,
  // linear_start/end of a schedule other than ldm_linear.
  ModelConfig iidm = ModelConfig::from_file(kConfigs + "iidm.json");
  EXPECT_EQ(iidm.autoencoder->to_json().at("n_embed"), 8192);
  iidm.autoencoder->kind = "kl";
  EXPECT_FALSE(iidm.autoencoder->to_json().contains("n_embed"));
  EXPECT_FALSE(iidm.diffusion.to_json().contains("linear_start"));
  iidm.diffusion.noise_schedule = "ldm_linear";
  EXPECT_EQ(iidm.diffusion.to_json().at("linear_end"), 0.0195);
}

}  // namespace
}  // namespace iidm
