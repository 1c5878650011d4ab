// `iidm batch`: the competition layout. A folder of label PNGs + label_to_img.json (label file ->
// reference image) + the reference folder -> <label stem>.jpg for every label. Resumable (finished
// outputs are skipped; files appear atomically), shardable (every shard computes whole batches, so
// any sharding reproduces the single run byte for byte), bad items reported while the rest goes on.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>

#include "cli/generation_options.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/image.h"
#include "core/progress.h"
#include "core/runtime.h"

namespace iidm::cli {
namespace fs = std::filesystem;
using torch::Tensor;

namespace {

struct Shard {
  int index = 0, count = 1;
};

Shard parse_shard(const std::string& text) {
  Shard s;
  const auto slash = text.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument(text);
    s.index = std::stoi(text.substr(0, slash));
    s.count = std::stoi(text.substr(slash + 1));
  } catch (const std::exception&) {
    fail("--shard '{}' must be i/N (0-based shard i of N)", text);
  }
  if (s.count < 1 || s.index < 0 || s.index >= s.count) fail("--shard '{}': need 0 <= i < N", text);
  return s;
}

// Slurm array jobs or torchrun-style variables, when --shard is not given.
Shard shard_from_environment() {
  if (auto id = env_int("SLURM_ARRAY_TASK_ID"), count = env_int("SLURM_ARRAY_TASK_COUNT"); id && count) {
    const int first = env_int("SLURM_ARRAY_TASK_MIN").value_or(0);
    return parse_shard(fmt::format("{}/{}", *id - first, *count));
  }
  if (auto rank = env_int("RANK"), world = env_int("WORLD_SIZE"); rank && world)
    return parse_shard(fmt::format("{}/{}", *rank, *world));
  return {};
}

struct Item {
  std::string label_file, stem, reference;
  size_t position = 0;  // in the sorted list of all labels (decides which shard reports a failure)
};

struct Failure {
  std::string name, reason;
};

}  // namespace

std::function<int()> add_batch_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("batch",
                                 "Competition-style batch run: labels folder + label_to_img.json + references -> "
                                 "<label stem>.jpg, resumable and shardable");
  struct Args {
    GenerationOptions gen;
    std::string labels, json, refs, out, size = "512x384", shard, ext = "jpg";
    int batch_size = 1;
  };
  auto args = std::make_shared<Args>();
  cmd->add_option("--labels", args->labels, "Folder of label PNGs")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--json", args->json, "label_to_img.json (default: inside --labels)");
  cmd->add_option("--refs", args->refs, "Folder of reference images named in the JSON (e.g. train/imgs)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--out", args->out, "Output folder")->required();
  cmd->add_option("--size", args->size, "Output WxH")->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size, "Images per forward")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--shard", args->shard, "Shard i/N (0-based); default from SLURM_ARRAY_TASK_ID/COUNT or RANK/WORLD_SIZE");
  cmd->add_option("--ext", args->ext, "Output format: jpg or png")->capture_default_str();
  args->gen.add_to(cmd);
  cmd->footer("Outputs: OUT/<stem>.<ext>; OUT/failures[-i-of-N].tsv (name, reason); OUT/summary[-i-of-N].json.\n"
              "Exit status: 0 if every item of this shard was produced, 1 otherwise.");

  return [args, &common]() {
    const auto start_time = std::chrono::steady_clock::now();
    const ImageSize size = parse_size(args->size);
    const int W = size.width, H = size.height;
    if (args->ext != "jpg" && args->ext != "png") fail("--ext must be jpg or png, got '{}'", args->ext);
    const Shard shard = args->shard.empty() ? shard_from_environment() : parse_shard(args->shard);
    const std::vector<Stage> stages = args->gen.stages();
    const std::string json_path = args->json.empty() ? (fs::path(args->labels) / "label_to_img.json").string() : args->json;
    const Json mapping = read_json_file(json_path);
    if (!mapping.is_object()) fail("{}: expected an object mapping label file names to reference image names", json_path);
    fs::create_directories(args->out);

    // 1. All labels, sorted; every shard sees the same list and validates the same way.
    std::vector<Item> all;
    for (const auto& e : fs::directory_iterator(args->labels)) {
      if (!e.is_regular_file() || e.path().extension() != ".png") continue;
      all.push_back({e.path().string(), e.path().stem().string(), "", 0});
    }
    std::sort(all.begin(), all.end(), [](const Item& a, const Item& b) { return a.stem < b.stem; });
    for (size_t i = 0; i < all.size(); ++i) all[i].position = i;
    std::set<std::string> label_names;
    for (const auto& it : all) label_names.insert(fs::path(it.label_file).filename().string());

    Pipeline pipeline = Pipeline::load(args->gen.files, args->gen.pipeline_options(common));
    const int num_labels = pipeline.config().unet.num_labels();
    if (W % pipeline.size_multiple() || H % pipeline.size_multiple())
      fail("--size {}x{} must be a multiple of {} for this model", W, H, pipeline.size_multiple());

    std::vector<Failure> failures;
    std::vector<Item> good;
    for (auto& it : all) {
      auto reject = [&](const std::string& reason) {
        if (static_cast<int>(it.position % shard.count) == shard.index) failures.push_back({it.stem, reason});
      };
      const std::string file = fs::path(it.label_file).filename().string();
      if (!mapping.contains(file) || !mapping[file].is_string()) {
        reject(fmt::format("no reference for {} in {}", file, json_path));
        continue;
      }
      it.reference = (fs::path(args->refs) / mapping[file].get<std::string>()).string();
      if (!fs::exists(it.reference)) {
        reject(fmt::format("{} names reference {}, which does not exist", json_path, it.reference));
        continue;
      }
      try {
        Tensor labels = read_label_map(it.label_file);
        if (labels.size(1) != H || labels.size(2) != W)
          throw Error(fmt::format("{}: label map is {}x{}, expected {}x{}", it.label_file, labels.size(2), labels.size(1), W, H));
        Tensor bad = (labels >= num_labels) & (labels != args->gen.ignore_label);
        if (bad.any().item<bool>())
          throw Error(fmt::format("{}: label value {} outside 0..{} (unlabelled = {})", it.label_file,
                                  labels.masked_select(bad)[0].item<int64_t>(), num_labels - 1, args->gen.ignore_label));
      } catch (const Error& e) {
        reject(e.what());
        continue;
      }
      good.push_back(it);
    }
    // JSON entries whose label file is missing are reported once, by shard 0.
    if (shard.index == 0)
      for (const auto& entry : mapping.items())
        if (!label_names.count(entry.key()))
          failures.push_back({fs::path(entry.key()).stem().string(),
                              fmt::format("{} names label {}, which is not in {}", json_path, entry.key(), args->labels)});

    // 2. Whole batches of good items, round-robin over shards.
    std::vector<std::vector<Item>> batches;
    for (size_t i = 0; i < good.size(); i += args->batch_size)
      batches.emplace_back(good.begin() + i, good.begin() + std::min(good.size(), i + args->batch_size));
    std::vector<std::vector<Item>> mine;
    for (size_t b = 0; b < batches.size(); ++b)
      if (static_cast<int>(b % shard.count) == shard.index) mine.push_back(batches[b]);
    auto output_of = [&](const Item& it) { return (fs::path(args->out) / (it.stem + "." + args->ext)).string(); };
    // A killed run can leave `<output>.tmp.<pid>` behind (never a broken output): this shard's own
    // leftovers are removed; other shards' items are never touched.
    std::set<std::string> my_outputs;
    for (const auto& batch : mine)
      for (const auto& it : batch) my_outputs.insert(fs::path(output_of(it)).filename().string());
    for (const auto& e : fs::directory_iterator(args->out)) {
      const std::string name = e.path().filename().string();
      const auto tmp = name.find(".tmp.");
      if (tmp != std::string::npos && my_outputs.count(name.substr(0, tmp))) fs::remove(e.path());
    }
    int64_t to_do = 0, skipped = 0;
    for (const auto& batch : mine)
      for (const auto& it : batch) (fs::exists(output_of(it)) ? skipped : to_do)++;

    fmt::print(stderr, "shard {}/{}: {} labels, {} bad, {} batches here, {} images to make, {} already done; {}\n",
               shard.index, shard.count, all.size(), failures.size(), mine.size(), to_do, skipped, describe(stages));
    ProgressBar bar("images", to_do);
    int64_t produced = 0, forwards_per_image = 0, steps_per_image = 0;
    for (const auto& batch : mine) {
      bool complete = true;
      for (const auto& it : batch) complete = complete && fs::exists(output_of(it));
      if (complete) continue;
      std::vector<GenerationItem> items;
      for (const auto& it : batch) {
        GenerationItem g;
        g.name = it.stem;
        g.labels = read_label_map(it.label_file)[0];
        g.start = read_image(it.reference, W, H)[0];
        g.seed = derive_seed(args->gen.seed, it.stem);
        items.push_back(g);
      }
      GenerationResult result;
      try {
        result = pipeline.generate(items, stages);
      } catch (const Error& e) {
        for (const auto& it : batch) failures.push_back({it.stem, e.what()});
        continue;
      }
      forwards_per_image = result.unet_forwards_per_image;
      steps_per_image = result.denoising_steps;
      for (size_t i = 0; i < batch.size(); ++i) {
        if (fs::exists(output_of(batch[i]))) continue;  // written before an interruption
        write_image(output_of(batch[i]), result.images[static_cast<int64_t>(i)]);
        bar.update(++produced);
      }
    }
    bar.finish();

    const std::string suffix = shard.count > 1 ? fmt::format("-{}-of-{}", shard.index, shard.count) : "";
    std::string tsv = "name\treason\n";
    for (const auto& f : failures) tsv += f.name + "\t" + f.reason + "\n";
    write_file_atomic((fs::path(args->out) / ("failures" + suffix + ".tsv")).string(), tsv);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
    Json summary{{"shard", fmt::format("{}/{}", shard.index, shard.count)},
                 {"labels_total", all.size()},
                 {"produced", produced},
                 {"already_done", skipped},
                 {"failed", failures.size()},
                 {"seconds", seconds},
                 {"seconds_per_image", produced ? seconds / produced : 0.0},
                 {"unet_forwards_per_image", forwards_per_image},
                 {"denoising_steps_per_image", steps_per_image},
                 {"stages", Json::array()}};
    for (const auto& s : stages) summary["stages"].push_back(s.to_json());
    write_file_atomic((fs::path(args->out) / ("summary" + suffix + ".json")).string(), summary.dump(2) + "\n");
    for (const auto& f : failures) fmt::print(stderr, "failed: {}: {}\n", f.name, f.reason);
    fmt::print("{} produced, {} already done, {} failed; {:.1f} s\n", produced, skipped, failures.size(), seconds);
    return failures.empty() ? 0 : 1;
  };
}

}  // namespace iidm::cli
