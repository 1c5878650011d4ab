#pragma once
// An ablation: every variant of the generation settings run over one validation set with the same
// seeds, each scored with src/metrics, tabulated with its cost. Resumable: each variant is a
// GenerationRunner run into OUT/variants/<name>/images (a rerun makes only missing images), and a
// finished variant's scores (metrics.json) and cost (cost.json) are reused.
#include <functional>
#include <string>
#include <vector>

#include "core/config.h"
#include "metrics/diversity.h"
#include "metrics/networks.h"
#include "metrics/score.h"
#include "pipeline/pipeline.h"
#include "pipeline/runner.h"
#include "pipeline/stage.h"

namespace iidm {

struct AblationVariant {
  std::string name;                // also its folder name: [A-Za-z0-9._+-]+
  std::string description;         // the stages in short, for the table
  std::vector<std::string> flags;  // as written in the variants file, for the table
  ModelFiles files;
  PipelineOptions pipeline;
  std::vector<Stage> stages;
  uint64_t seed = 0;
};

// The validation set: competition layout (imgs/ + labels/); item i takes item (i + offset)'s image
// as its style reference, as `iidm evaluate` does, and the set's images are the real images of
// FID/KID.
struct AblationData {
  std::string root;
  int count = 0;  // the first `count` items by name; 0: all
  int reference_offset = 1;
};

struct AblationOptions {
  std::string out_dir;
  int batch_size = 4;
  int grid_examples = 4;      // rows of grid.png
  int diversity_maps = 4;     // label maps that get extra samples (0: no diversity measure)
  int diversity_samples = 3;  // samples per such map (the main image included)
  ScoreOptions score;         // real_dir is the data set's imgs/; the cache goes to OUT
};

struct AblationNetworks {
  SegmentationNetwork* segmenter = nullptr;  // required
  FeatureNetwork* features = nullptr;        // FID/KID when set
  DistanceNetwork* lpips = nullptr;          // diversity in LPIPS when set, else pixel RMS
};

struct VariantCost {
  int64_t nfe = 0;               // U-Net forwards per image
  double seconds_per_image = 0;  // generation wall time per image made (resumed runs add up)
  double images_per_hour = 0;
  double peak_rss_mib = 0;  // while this variant generated (0 when nothing was generated here)
  int64_t images_timed = 0;
};

struct VariantResult {
  AblationVariant variant;
  ScoreReport score;
  DiversityResult diversity;
  VariantCost cost;
};

struct AblationCallbacks {
  std::function<void(int64_t total_images, int64_t already_done)> on_plan;  // over the whole grid
  std::function<void(const std::string& variant)> on_variant;
  std::function<void(int64_t done)> on_image;  // images done over the whole grid
};

// A variants file: {"note": ..., "variants": [{"name": ..., "note": ..., "flags": ["--sampler", "ddpm"]}]}.
// The flags are parsed by the caller (the CLI binds them like `generate`'s); names are unique and
// name folders.
struct VariantSpec {
  std::string name, note;
  std::vector<std::string> flags;

  template <class Self, class Field>
  static void fields(Self& c, Field&& field) {
    field("name", c.name, kRequired);
    field("note", c.note, written_if(!c.note.empty()));
    field("flags", c.flags);
  }
  void validate() const;
  static VariantSpec from_json(ConfigReader& reader);
  Json to_json() const;
};

struct VariantsFile {
  std::string note;
  std::vector<VariantSpec> variants;

  template <class Self, class Field>
  static void fields(Self& c, Field&& field) {
    field("note", c.note, written_if(!c.note.empty()));
    field("variants", c.variants, kRequired);
  }
  void validate() const;
  static VariantsFile from_json(ConfigReader& reader);
  static VariantsFile from_file(const std::string& path);
  Json to_json() const;
};

std::vector<VariantResult> run_ablation(const std::vector<AblationVariant>& variants, const AblationData& data,
                                        const AblationOptions& options, const AblationNetworks& networks,
                                        const AblationCallbacks& callbacks = {});

// OUT/results.json (the schema tools/ablation_report.py reads), results.csv and results.md, and
// OUT/grid.png: mask | reference | each variant, for the first grid_examples items.
void write_ablation_results(const std::vector<VariantResult>& results, const AblationData& data,
                            const AblationOptions& options, const std::string& machine);

}  // namespace iidm
