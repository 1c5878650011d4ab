// Every JSON config in the repository survives read -> write -> read: the config read back equals
// the first (field by field, nested sections included) and writing it again gives the same text.
// With one field list per config, a key that is read but not written cannot slip through again.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "pipeline/ablation.h"
#include "pipeline/model_config.h"
#include "pipeline/stage.h"
#include "segmentation/segmenter.h"
#include "test_util.h"

namespace iidm {
namespace {
namespace fs = std::filesystem;

enum class Kind { kModel, kAutoencoder, kSegmenter, kPreset, kVariants };

std::vector<std::string> repository_configs() {
  std::vector<std::string> paths;
  for (const char* folder : {"configs", "models"})
    for (const auto& entry : fs::recursive_directory_iterator(fs::path(IIDM_SOURCE_DIR) / folder))
      if (entry.is_regular_file() && entry.path().extension() == ".json") paths.push_back(entry.path().string());
  std::sort(paths.begin(), paths.end());
  return paths;
}

// By content: each kind has a key the others lack. A file of a new kind fails here, so that it
// gets a round trip of its own.
Kind kind_of(const std::string& path, const Json& json) {
  if (json.contains("stages")) return Kind::kPreset;
  if (json.contains("variants")) return Kind::kVariants;
  if (json.contains("unet")) return Kind::kModel;
  if (json.contains("ddconfig")) return Kind::kAutoencoder;
  if (json.contains("blocks") && json.contains("channel_mult")) return Kind::kSegmenter;
  throw std::runtime_error(path + ": not a model, autoencoder, segmenter, preset or ablation variants config");
}

// `where` names the source; a model config also finds its autoencoder file next to it.
template <typename Config>
Config read_config(const Json& json, const std::string& where) {
  ConfigReader reader(json, where);
  return Config::from_json(reader);
}

template <typename Config>
void expect_round_trip(const std::string& path) {
  const Config first = read_config<Config>(read_json_file(path), path);
  const Json written = first.to_json();
  const Config second = read_config<Config>(written, path + " (as written)");
  EXPECT_TRUE(same_fields(first, second)) << path << " read back differently from\n" << written.dump(2);
  EXPECT_EQ(second.to_json().dump(2), written.dump(2)) << path;
}

// A preset is written as its note and its stages' to_json(), the form Preset::from_json reads.
Json preset_json(const Preset& preset) {
  Json json{{"note", preset.note}, {"stages", Json::array()}};
  for (const Stage& stage : preset.stages) json["stages"].push_back(stage.to_json());
  return json;
}

bool same_stage(const Stage& a, const Stage& b) {
  return a.respacing == b.respacing && a.sampler == b.sampler && a.strength == b.strength &&
         a.start_index == b.start_index && a.eta == b.eta && a.guidance == b.guidance &&
         a.color_transfer == b.color_transfer && a.clip_denoised == b.clip_denoised;
}

void expect_preset_round_trip(const std::string& path) {
  const Preset first = Preset::from_file(path);
  const Json written = preset_json(first);
  ConfigReader reader(written, path + " (as written)");
  const Preset second = Preset::from_json(reader, first.name);
  EXPECT_EQ(second.note, first.note) << path;
  ASSERT_EQ(second.stages.size(), first.stages.size()) << path;
  for (size_t i = 0; i < first.stages.size(); ++i)
    EXPECT_TRUE(same_stage(first.stages[i], second.stages[i])) << path << " stage " << i << ":\n" << written.dump(2);
  EXPECT_EQ(preset_json(second).dump(2), written.dump(2)) << path;
}

TEST(ConfigRoundTrip, EveryRepositoryConfigReadsBackEqualAndWritesTheSameText) {
  std::map<Kind, int> seen;
  for (const std::string& path : repository_configs()) {
    SCOPED_TRACE(path);
    const Kind kind = kind_of(path, read_json_file(path));
    ++seen[kind];
    switch (kind) {
      case Kind::kModel:
        expect_round_trip<ModelConfig>(path);
        break;
      case Kind::kAutoencoder:
        expect_round_trip<AutoencoderConfig>(path);
        break;
      case Kind::kSegmenter:
        expect_round_trip<SegmenterConfig>(path);
        break;
      case Kind::kPreset:
        expect_preset_round_trip(path);
        break;
      case Kind::kVariants:
        expect_round_trip<VariantsFile>(path);
        break;
    }
  }
  // configs/models (4 models, 2 autoencoders), configs/demo and models/demo (one of each kind
  // each), configs/presets (3).
  EXPECT_GE(seen[Kind::kModel], 6);
  EXPECT_GE(seen[Kind::kAutoencoder], 4);
  EXPECT_GE(seen[Kind::kSegmenter], 2);
  EXPECT_GE(seen[Kind::kPreset], 6);  // + configs/ablation/three-rounds-demo.json
  EXPECT_GE(seen[Kind::kVariants], 1);
}

TEST(ConfigRoundTrip, AModelConfigIsWrittenWholeAndStandsAlone) {
  // models/demo/model.json names its autoencoder file; the written config carries it inline, with
  // the U-Net as UNetModel's arguments, so it reads the same from any folder.
  const std::string path = std::string(IIDM_SOURCE_DIR) + "/models/demo/model.json";
  const ModelConfig config = ModelConfig::from_file(path);
  const Json written = config.to_json();
  EXPECT_TRUE(written.at("autoencoder").is_object());
  EXPECT_FALSE(written.at("unet").contains("create_model"));
  EXPECT_EQ(written.at("note"), config.note);
  test::TempDir dir;
  std::ofstream(dir.file("model.json")) << written.dump(2);
  EXPECT_TRUE(same_fields(ModelConfig::from_file(dir.file("model.json")), config));
  // The scale measured by train-autoencoder arrives with the rest of the autoencoder.
  EXPECT_EQ(written.at("autoencoder").at("scale_factor").get<double>(), config.autoencoder->scale_factor);
  EXPECT_NE(config.autoencoder->scale_factor, 1.0);
}

TEST(ConfigRoundTrip, DDConfigKeepsGivePreEndAndTanhOut) {
  DDConfig dd;
  dd.give_pre_end = true;
  dd.tanh_out = true;
  const Json json = dd.to_json();
  EXPECT_EQ(json.at("give_pre_end"), true);
  EXPECT_EQ(json.at("tanh_out"), true);
  const DDConfig back = read_config<DDConfig>(json, "dd.json");
  EXPECT_TRUE(back.give_pre_end);
  EXPECT_TRUE(back.tanh_out);
  EXPECT_TRUE(same_fields(back, dd));

  // Through the autoencoder.json that train-autoencoder writes (AutoencoderConfig::to_json).
  const std::string demo = std::string(IIDM_SOURCE_DIR) + "/configs/demo/autoencoder.json";
  AutoencoderConfig ae = read_config<AutoencoderConfig>(read_json_file(demo), demo);
  ae.ddconfig.give_pre_end = true;
  ae.ddconfig.tanh_out = true;
  test::TempDir dir;
  std::ofstream(dir.file("autoencoder.json")) << ae.to_json().dump(2) << "\n";
  const AutoencoderConfig read = read_config<AutoencoderConfig>(read_json_file(dir.file("autoencoder.json")), "ae");
  EXPECT_TRUE(read.ddconfig.give_pre_end);
  EXPECT_TRUE(read.ddconfig.tanh_out);
  EXPECT_TRUE(same_fields(read, ae));
  // A changed field is noticed by the comparison the round trips rely on.
  ae.ddconfig.tanh_out = false;
  EXPECT_FALSE(same_fields(read, ae));
}

// Reads `json` as the config of `kind`, with `where` naming it.
void read_as(Kind kind, const Json& json, const std::string& where) {
  ConfigReader reader(json, where);
  switch (kind) {
    case Kind::kModel:
      ModelConfig::from_json(reader);
      break;
    case Kind::kAutoencoder:
      AutoencoderConfig::from_json(reader);
      break;
    case Kind::kSegmenter:
      SegmenterConfig::from_json(reader);
      break;
    case Kind::kPreset:
      Preset::from_json(reader, "preset");
      break;
    case Kind::kVariants:
      VariantsFile::from_json(reader);
      break;
  }
}

// Every object inside `json` (sections, preset stages), by its JSON pointer and its name in errors.
void objects_in(const Json& json, const Json::json_pointer& pointer, const std::string& where,
                std::vector<std::pair<Json::json_pointer, std::string>>& out) {
  if (json.is_object()) {
    out.emplace_back(pointer, where);
    for (const auto& item : json.items()) objects_in(item.value(), pointer / item.key(), where + "." + item.key(), out);
  } else if (json.is_array()) {
    for (size_t i = 0; i < json.size(); ++i)
      objects_in(json[i], pointer / i, where + "[" + std::to_string(i) + "]", out);
  }
}

TEST(ConfigRoundTrip, AnUnknownKeyAnywhereNamesTheKeyAndTheFile) {
  int cases = 0;
  for (const std::string& path : repository_configs()) {
    const Json original = read_json_file(path);
    const Kind kind = kind_of(path, original);
    std::vector<std::pair<Json::json_pointer, std::string>> objects;
    objects_in(original, Json::json_pointer(), path, objects);
    for (const auto& [pointer, where] : objects) {
      Json json = original;
      json[pointer]["chanel_mult"] = 1;
      test::expect_error([&] { read_as(kind, json, path); }, {where + ":", "unknown key", "'chanel_mult'"});
      ++cases;
    }
  }
  EXPECT_GE(cases, 40);
}

TEST(ConfigRoundTrip, AnUnknownKeyInAReferencedAutoencoderFileNamesThatFile) {
  test::TempDir dir;
  Json ae = read_json_file(std::string(IIDM_SOURCE_DIR) + "/models/demo/autoencoder.json");
  ae["ddconfig"]["tanh_output"] = true;
  std::ofstream(dir.file("ae.json")) << ae.dump();
  Json model = read_json_file(std::string(IIDM_SOURCE_DIR) + "/models/demo/model.json");
  model["autoencoder"] = "ae.json";
  std::ofstream(dir.file("model.json")) << model.dump();
  test::expect_error([&] { ModelConfig::from_file(dir.file("model.json")); },
                     {dir.file("ae.json") + ".ddconfig", "unknown key", "'tanh_output'"});
}

}  // namespace
}  // namespace iidm
