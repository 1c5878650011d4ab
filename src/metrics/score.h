#pragma once
// Scoring a folder of images that already exist (a competition submission, or any tool's
// outputs) against their label maps, references and a folder of real images: mask accuracy and
// mIoU, style similarity, FID and KID, and the competition score. `iidm score`, `iidm evaluate`
// and `iidm ablate` all call score_images; a bad item is reported by name and the rest is scored.
#include <torch/types.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "metrics/competition.h"
#include "metrics/kid.h"
#include "metrics/networks.h"
#include "metrics/style.h"

namespace iidm {

struct ScoreItem {
  std::string name;       // the label map's stem
  std::string image;      // the output to score
  std::string labels;     // its label map
  std::string reference;  // its style reference; empty: no style measure for this item
};

struct ScoreFailure {
  std::string name, reason;
};

struct ScoreListing {
  std::vector<ScoreItem> items;
  std::vector<ScoreFailure> failures;  // e.g. a label map without an output
};

// One item per label map (labels_dir/*.png, sorted); its output is images_dir/<stem>.{jpg,png,jpeg}.
// With `json_path` (the competition's label_to_img.json: {"<label file>": "<reference file>"}) each
// item's reference is refs_dir/<that name>. A label without an output, an output without a label
// map, or a reference that is named but absent, is a failure naming the file; the other items are
// listed.
ScoreListing list_score_items(const std::string& images_dir, const std::string& labels_dir,
                              const std::string& json_path = "", const std::string& refs_dir = "");

struct ScoreOptions {
  int64_t ignore_label = 255;
  int batch_size = 8;
  std::string real_dir;          // FID and KID against these images (needs a feature network)
  std::string real_stats_cache;  // where the real folder's features are cached; empty: not cached
  int kid_subsets = 100, kid_subset_size = 1000;
  uint64_t kid_seed = 0;
};

struct ItemScore {
  std::string name, reference;
  double mask_accuracy = 0, miou = 0;
  std::optional<StyleItem> style;  // when the item has a reference
};

struct ScoreReport {
  std::vector<ItemScore> items;
  std::vector<ScoreFailure> failures;
  double mask_accuracy = 0;   // mean of the images' pixel accuracies (the competition's)
  double pixel_accuracy = 0;  // over all pixels of all images
  double miou = 0;            // from the confusion matrix summed over the images
  std::optional<StyleSummary> style;
  std::optional<double> fid;
  std::optional<KidResult> kid;
  int real_images = 0;
  std::string segmenter, features;
  bool features_user_supplied = false;
  std::optional<CompetitionScore> competition;  // needs style and FID
  std::vector<std::string> notes;               // what a reader must know (omitted terms, feature caveats)
  Json to_json() const;
};

// Scores `items` (see ScoreReport). `features` may be null (no FID/KID). `on_progress(done, total)`
// is called per item.
ScoreReport score_images(const std::vector<ScoreItem>& items, SegmentationNetwork& segmenter, FeatureNetwork* features,
                         const ScoreOptions& options, const std::function<void(int64_t, int64_t)>& on_progress = {});

}  // namespace iidm
