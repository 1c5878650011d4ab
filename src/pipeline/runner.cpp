#include "pipeline/runner.h"

#include <chrono>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "core/image.h"
#include "core/labels.h"
#include "core/runtime.h"
#include "core/seed.h"

namespace iidm {
namespace fs = std::filesystem;
using torch::Tensor;

Shard Shard::parse(const std::string& text) {
  Shard s;
  const auto slash = text.find('/');
  try {
    if (slash == std::string::npos) throw std::invalid_argument(text);
    size_t used_index = 0, used_count = 0;
    s.index = std::stoi(text.substr(0, slash), &used_index);
    s.count = std::stoi(text.substr(slash + 1), &used_count);
    if (used_index != slash || used_count != text.size() - slash - 1) throw std::invalid_argument(text);
  } catch (const std::exception&) {
    fail("--shard '{}' must be i/N (0-based shard i of N)", text);
  }
  if (s.count < 1 || s.index < 0 || s.index >= s.count) fail("--shard '{}': need 0 <= i < N", text);
  return s;
}

Shard Shard::from_environment() {
  if (auto id = env_int("SLURM_ARRAY_TASK_ID"), count = env_int("SLURM_ARRAY_TASK_COUNT"); id && count) {
    const int first = env_int("SLURM_ARRAY_TASK_MIN").value_or(0);
    return parse(fmt::format("{}/{}", *id - first, *count));
  }
  if (auto rank = env_int("RANK"), world = env_int("WORLD_SIZE"); rank && world)
    return parse(fmt::format("{}/{}", *rank, *world));
  return {};
}

std::string Shard::file_suffix() const { return count > 1 ? fmt::format("-{}-of-{}", index, count) : ""; }

ItemListing list_competition_items(const std::string& labels_dir, const std::string& json_path,
                                   const std::string& refs_dir) {
  const Json mapping = read_json_file(json_path);
  if (!mapping.is_object()) fail("{}: expected an object mapping label file names to reference image names", json_path);
  ItemListing listing;
  std::set<std::string> label_names;
  for (const auto& e : fs::directory_iterator(labels_dir)) {
    if (!e.is_regular_file() || e.path().extension() != ".png") continue;
    RunItem item;
    item.name = e.path().stem().string();
    item.label_file = e.path().string();
    const std::string file = e.path().filename().string();
    label_names.insert(file);
    if (!mapping.contains(file) || !mapping[file].is_string()) {
      item.problem = fmt::format("no reference for {} in {}", file, json_path);
    } else {
      item.reference = (fs::path(refs_dir) / mapping[file].get<std::string>()).string();
      if (!fs::exists(item.reference))
        item.problem = fmt::format("{} names reference {}, which does not exist", json_path, item.reference);
    }
    listing.items.push_back(std::move(item));
  }
  std::sort(listing.items.begin(), listing.items.end(),
            [](const RunItem& a, const RunItem& b) { return a.name < b.name; });
  for (const auto& entry : mapping.items())
    if (!label_names.count(entry.key()))
      listing.orphans.push_back(
          {fs::path(entry.key()).stem().string(),
           fmt::format("{} names label {}, which is not in {}", json_path, entry.key(), labels_dir)});
  return listing;
}

void RunOptions::validate() const {
  if (out_dir.empty()) fail("run: no output folder");
  if (extension != "jpg" && extension != "png") fail("--ext must be jpg or png, got '{}'", extension);
  if (width < 1 || height < 1) fail("run: image size {}x{} must be positive", width, height);
  if (batch_size < 1) fail("run: batch size must be at least 1, got {}", batch_size);
  if (shard.count < 1 || shard.index < 0 || shard.index >= shard.count)
    fail("run: shard {}/{} needs 0 <= i < N", shard.index, shard.count);
  if (stages.empty()) fail("run: no stages");
}

GenerationRunner::GenerationRunner(Pipeline& pipeline, RunOptions options)
    : pipeline_(pipeline), options_(std::move(options)) {
  options_.validate();
  pipeline_.check_stages(options_.stages);  // a bad stage fails before any item is read
  const int multiple = pipeline_.size_multiple();
  if (options_.width % multiple || options_.height % multiple)
    fail("--size {}x{} must be a multiple of {} for this model", options_.width, options_.height, multiple);
}

std::string GenerationRunner::output_path(const std::string& name) const {
  return (fs::path(options_.out_dir) / (name + "." + options_.extension)).string();
}

std::string GenerationRunner::check(const RunItem& item) const {
  if (!item.problem.empty()) return item.problem;
  if (pipeline_.latent() && item.reference.empty()) return fmt::format("{}: no style reference", item.name);
  if (!item.reference.empty() && !fs::exists(item.reference))
    return fmt::format("reference {} does not exist", item.reference);
  try {
    const Tensor labels = read_label_map(item.label_file);
    if (labels.size(1) != options_.height || labels.size(2) != options_.width)
      return fmt::format("{}: label map is {}x{}, expected {}x{}", item.label_file, labels.size(2), labels.size(1),
                         options_.width, options_.height);
    check_label_range(labels, pipeline_.config().unet.num_labels(), pipeline_.options().ignore_label, item.label_file);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void GenerationRunner::remove_stale_temp_files(const std::vector<std::vector<RunItem>>& batches) const {
  // A killed run can leave `<output>.tmp.<pid>` behind (never a broken output): this shard's own
  // leftovers are removed; other shards' items are never touched.
  std::set<std::string> mine;
  for (const auto& batch : batches)
    for (const auto& item : batch) mine.insert(fs::path(output_path(item.name)).filename().string());
  for (const auto& e : fs::directory_iterator(options_.out_dir)) {
    const std::string name = e.path().filename().string();
    const auto tmp = name.find(".tmp.");
    if (tmp != std::string::npos && mine.count(name.substr(0, tmp))) fs::remove(e.path());
  }
}

RunSummary GenerationRunner::run(const std::vector<RunItem>& items, const std::vector<RunFailure>& known_failures,
                                 const RunCallbacks& callbacks) {
  const auto start_time = std::chrono::steady_clock::now();
  const Shard& shard = options_.shard;
  fs::create_directories(options_.out_dir);
  RunSummary summary;

  // 1. Every shard validates the same sorted list the same way; a bad item is reported by the
  //    shard its position falls to, failures known beforehand by shard 0.
  std::vector<RunItem> sorted = items;
  std::stable_sort(sorted.begin(), sorted.end(), [](const RunItem& a, const RunItem& b) { return a.name < b.name; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i].name == sorted[i - 1].name) fail("run: two items are named '{}'", sorted[i].name);
  std::vector<RunItem> valid;
  for (size_t position = 0; position < sorted.size(); ++position) {
    const std::string problem = check(sorted[position]);
    if (problem.empty()) {
      valid.push_back(sorted[position]);
    } else {
      ++summary.plan.invalid;
      if (shard.owns(position)) summary.failures.push_back({sorted[position].name, problem});
    }
  }
  if (shard.index == 0) summary.failures.insert(summary.failures.end(), known_failures.begin(), known_failures.end());
  summary.plan.items = sorted.size();

  // 2. Whole batches of valid items, dealt round-robin to shards.
  std::vector<std::vector<RunItem>> mine;
  const size_t batch_size = static_cast<size_t>(options_.batch_size);
  for (size_t i = 0, b = 0; i < valid.size(); i += batch_size, ++b)
    if (shard.owns(b)) mine.emplace_back(valid.begin() + i, valid.begin() + std::min(valid.size(), i + batch_size));
  remove_stale_temp_files(mine);
  summary.plan.batches = mine.size();
  for (const auto& batch : mine)
    for (const auto& item : batch)
      (fs::exists(output_path(item.name)) ? summary.plan.already_done : summary.plan.to_make)++;
  if (callbacks.on_plan) callbacks.on_plan(summary.plan);

  // 3. Generate what is missing; a failing batch is reported and the run goes on.
  for (const auto& batch : mine) {
    bool complete = true;
    for (const auto& item : batch) complete = complete && fs::exists(output_path(item.name));
    if (complete) continue;
    std::vector<GenerationItem> inputs;
    GenerationResult result;
    try {
      for (const auto& item : batch) {
        GenerationItem g;
        g.name = item.name;
        g.labels = read_label_map(item.label_file)[0];
        if (!item.reference.empty()) g.start = read_image(item.reference, options_.width, options_.height)[0];
        g.seed = derive_seed(options_.seed, item.name);
        inputs.push_back(g);
      }
      result = pipeline_.generate(inputs, options_.stages);
    } catch (const Error& e) {
      for (const auto& item : batch) summary.failures.push_back({item.name, e.what()});
      continue;
    }
    summary.unet_forwards_per_image = result.unet_forwards_per_image;
    summary.denoising_steps_per_image = result.denoising_steps;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (fs::exists(output_path(batch[i].name))) continue;  // written before an interruption
      write_image(output_path(batch[i].name), result.images[static_cast<int64_t>(i)]);
      ++summary.produced;
      if (callbacks.on_image) callbacks.on_image(summary.produced, summary.plan.to_make);
    }
  }

  // 4. Reports, written atomically like the images.
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
  std::string tsv = "name\treason\n";
  for (const auto& f : summary.failures) tsv += f.name + "\t" + f.reason + "\n";
  summary.failures_path = (fs::path(options_.out_dir) / ("failures" + shard.file_suffix() + ".tsv")).string();
  write_file_atomic(summary.failures_path, tsv);
  Json report{{"shard", fmt::format("{}/{}", shard.index, shard.count)},
              {"labels_total", summary.plan.items},
              {"produced", summary.produced},
              {"already_done", summary.plan.already_done},
              {"failed", summary.failures.size()},
              {"seconds", summary.seconds},
              {"seconds_per_image", summary.produced ? summary.seconds / summary.produced : 0.0},
              {"unet_forwards_per_image", summary.unet_forwards_per_image},
              {"denoising_steps_per_image", summary.denoising_steps_per_image},
              {"stages", Json::array()}};
  for (const auto& s : options_.stages) report["stages"].push_back(s.to_json());
  summary.summary_path = (fs::path(options_.out_dir) / ("summary" + shard.file_suffix() + ".json")).string();
  write_file_atomic(summary.summary_path, report.dump(2) + "\n");
  return summary;
}

}  // namespace iidm
