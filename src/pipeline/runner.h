#pragma once
// A generation run over many items, as `batch` runs it and `ablate`, `serve` and the tests reuse
// it: list and validate the items, form whole batches, keep this shard's batches, skip outputs
// that already exist (a resumed run), clean a killed run's temporary files, generate, write each
// image atomically, and report failures and a summary — the bad item is reported and the rest
// goes on.
//
// Determinism: items are sorted by name, batches are formed from the sorted list of VALID items
// and dealt round-robin to shards, and each image's seed derives from the run seed and its name,
// so any sharding, and any resumed run, reproduces the single run byte for byte.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/config.h"
#include "pipeline/pipeline.h"
#include "pipeline/stage.h"

namespace iidm {

// Shard i of N (0-based).
struct Shard {
  int index = 0, count = 1;
  // "i/N"; errors name the text.
  static Shard parse(const std::string& text);
  // Slurm array jobs (SLURM_ARRAY_TASK_ID/COUNT/MIN) or torchrun-style RANK/WORLD_SIZE; else 0/1.
  static Shard from_environment();
  bool owns(size_t position) const { return static_cast<int>(position % count) == index; }
  // "" for a single shard, "-i-of-N" otherwise (file names of per-shard reports).
  std::string file_suffix() const;
};

// One image of a run.
struct RunItem {
  std::string name;        // output stem; the per-image seed derives from it
  std::string label_file;  // label PNG (class ids)
  std::string reference;   // style reference / start image ("" for none)
  // Set when the listing already found the item unusable (e.g. no reference named for it).
  std::string problem;
};

struct RunFailure {
  std::string name, reason;
};

// The competition layout: a folder of label PNGs, label_to_img.json mapping label file names to
// reference image names, and the folder those references are in.
struct ItemListing {
  std::vector<RunItem> items;  // every label PNG, sorted by name
  // Entries of the JSON whose label file does not exist (reported once, by shard 0).
  std::vector<RunFailure> orphans;
};
ItemListing list_competition_items(const std::string& labels_dir, const std::string& json_path,
                                   const std::string& refs_dir);

struct RunOptions {
  std::string out_dir;
  std::string extension = "jpg";  // jpg | png
  int width = 0, height = 0;      // every label map must have this size
  int batch_size = 1;
  Shard shard;
  uint64_t seed = 0;
  std::vector<Stage> stages;
  void validate() const;
};

// What a run is about to do, for a progress display.
struct RunPlan {
  size_t items = 0, invalid = 0, batches = 0;  // batches of this shard
  int64_t to_make = 0, already_done = 0;
};

struct RunSummary {
  RunPlan plan;
  int64_t produced = 0;
  std::vector<RunFailure> failures;  // this shard's
  double seconds = 0;
  int64_t unet_forwards_per_image = 0, denoising_steps_per_image = 0;
  std::string failures_path, summary_path;
  bool ok() const { return failures.empty(); }
};

struct RunCallbacks {
  std::function<void(const RunPlan&)> on_plan;
  // After each image written: images made so far in this run, and how many this run will make.
  std::function<void(int64_t made, int64_t to_make)> on_image;
};

class GenerationRunner {
 public:
  // The pipeline must outlive the runner. Options are validated here.
  GenerationRunner(Pipeline& pipeline, RunOptions options);

  // Runs `items` (plus failures already known, e.g. a listing's orphans, which this shard reports).
  // Writes OUT/<name>.<ext> per item, OUT/failures<suffix>.tsv and OUT/summary<suffix>.json.
  RunSummary run(const std::vector<RunItem>& items, const std::vector<RunFailure>& known_failures = {},
                 const RunCallbacks& callbacks = {});

  // Where item `name`'s image goes.
  std::string output_path(const std::string& name) const;

 private:
  // Empty when `item` can be generated, else why not.
  std::string check(const RunItem& item) const;
  void remove_stale_temp_files(const std::vector<std::vector<RunItem>>& batches) const;

  Pipeline& pipeline_;
  RunOptions options_;
};

}  // namespace iidm
