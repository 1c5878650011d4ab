#include "metrics/score.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/image.h"
#include "core/labels.h"
#include "metrics/feature_stats.h"
#include "metrics/frechet.h"
#include "metrics/histogram.h"
#include "metrics/segmentation.h"

namespace iidm {
namespace fs = std::filesystem;
using torch::Tensor;

ScoreListing list_score_items(const std::string& images_dir, const std::string& labels_dir,
                              const std::string& json_path, const std::string& refs_dir) {
  if (!fs::is_directory(images_dir)) fail("{}: no such folder of images", images_dir);
  if (!fs::is_directory(labels_dir)) fail("{}: no such folder of label maps", labels_dir);
  Json mapping;
  if (!json_path.empty()) {
    mapping = read_json_file(json_path);
    if (!mapping.is_object()) fail("{}: expected an object mapping label file names to reference names", json_path);
    if (refs_dir.empty()) fail("{} names references, but no folder of references was given", json_path);
    if (!fs::is_directory(refs_dir)) fail("{}: no such folder of references", refs_dir);
  }
  std::vector<fs::path> labels;
  for (const auto& e : fs::directory_iterator(labels_dir))
    if (e.is_regular_file() && e.path().extension() == ".png") labels.push_back(e.path());
  std::sort(labels.begin(), labels.end());
  if (labels.empty()) fail("{}: no label maps (*.png)", labels_dir);
  ScoreListing listing;
  for (const auto& label : labels) {
    const std::string stem = label.stem().string();
    ScoreItem item{stem, "", label.string(), ""};
    for (const char* ext : {".jpg", ".png", ".jpeg"}) {
      const fs::path candidate = fs::path(images_dir) / (stem + ext);
      if (fs::exists(candidate)) {
        item.image = candidate.string();
        break;
      }
    }
    if (item.image.empty()) {
      listing.failures.push_back(
          {stem, fmt::format("no output {}/{}.jpg (or .png) for {}", images_dir, stem, label.string())});
      continue;
    }
    if (!json_path.empty()) {
      const std::string key = label.filename().string();
      if (!mapping.contains(key) || !mapping[key].is_string()) {
        listing.failures.push_back({stem, fmt::format("{} names no reference for {}", json_path, key)});
        continue;
      }
      item.reference = (fs::path(refs_dir) / mapping[key].get<std::string>()).string();
      if (!fs::exists(item.reference)) {
        listing.failures.push_back({stem, fmt::format("reference {} does not exist", item.reference)});
        continue;
      }
    }
    listing.items.push_back(item);
  }
  // An output without a label map cannot be scored: reported, not silently left out.
  std::vector<std::string> orphans;
  for (const auto& e : fs::directory_iterator(images_dir))
    if (is_image_file(e.path()) && !fs::exists(fs::path(labels_dir) / (e.path().stem().string() + ".png")))
      orphans.push_back(e.path().string());
  std::sort(orphans.begin(), orphans.end());
  for (const auto& path : orphans)
    listing.failures.push_back(
        {fs::path(path).stem().string(),
         fmt::format("{}: no label map {}/{}.png", path, labels_dir, fs::path(path).stem().string())});
  return listing;
}

ScoreReport score_images(const std::vector<ScoreItem>& items, SegmentationNetwork& segmenter, FeatureNetwork* features,
                         const ScoreOptions& options, const std::function<void(int64_t, int64_t)>& on_progress) {
  ScoreReport report;
  report.segmenter = segmenter.description();
  if (options.batch_size < 1) fail("score: batch size must be at least 1, got {}", options.batch_size);
  const int num_classes = segmenter.num_classes() > 0 ? segmenter.num_classes() : 256;
  ConfusionMatrix total(num_classes, options.ignore_label);
  std::vector<Tensor> output_histograms, output_features;
  std::vector<std::string> reference_names;
  std::vector<ItemScore*> styled;
  std::map<std::string, Tensor> reference_histograms;
  int64_t width = 0, height = 0;  // of the first output: real images are read at this size

  // Items are read one by one (a bad one is reported, the rest go on) and processed in batches of
  // one size; only histograms and feature vectors are kept, so memory does not grow with images.
  std::vector<std::pair<ScoreItem, Tensor>> pending;  // (item, image [3, H, W])
  std::vector<Tensor> pending_labels;
  int64_t done = 0;
  report.items.reserve(items.size());
  auto flush = [&]() {
    if (pending.empty()) return;
    std::vector<Tensor> images;
    for (const auto& p : pending) images.push_back(p.second);
    const Tensor batch = torch::stack(images);
    const Tensor predicted = segmenter.predict(batch);
    if (features) output_features.push_back(features->features(batch));
    for (size_t i = 0; i < pending.size(); ++i) {
      ConfusionMatrix one(num_classes, options.ignore_label);
      one.add(predicted[static_cast<int64_t>(i)], pending_labels[i]);
      total.merge(one);
      ItemScore score;
      score.name = pending[i].first.name;
      score.mask_accuracy = one.pixel_accuracy();
      score.miou = one.mean_iou();
      report.items.push_back(score);
      if (!pending[i].first.reference.empty()) {
        output_histograms.push_back(color_histogram(pending[i].second));
        reference_names.push_back(pending[i].first.reference);
        report.items.back().reference = pending[i].first.reference;
      }
    }
    pending.clear();
    pending_labels.clear();
  };
  for (const auto& item : items) {
    try {
      const Tensor image = read_image(item.image)[0];
      if (!width) width = image.size(2), height = image.size(1);
      const Tensor labels =
          read_label_map(item.labels, static_cast<int>(image.size(2)), static_cast<int>(image.size(1)))[0];
      check_label_range(labels.unsqueeze(0), num_classes, options.ignore_label, item.labels);
      if (!item.reference.empty() && !reference_histograms.count(item.reference))
        reference_histograms.emplace(item.reference, color_histogram(read_image(item.reference)[0]));
      if (!pending.empty() && pending[0].second.sizes() != image.sizes()) flush();
      pending.emplace_back(item, image);
      pending_labels.push_back(labels);
      if (static_cast<int>(pending.size()) == options.batch_size) flush();
    } catch (const Error& e) {
      report.failures.push_back({item.name, e.what()});
    }
    if (on_progress) on_progress(++done, static_cast<int64_t>(items.size()));
  }
  flush();
  if (report.items.empty()) return report;

  double accuracy_sum = 0;
  for (const auto& s : report.items) accuracy_sum += s.mask_accuracy;
  report.mask_accuracy = accuracy_sum / static_cast<double>(report.items.size());
  report.pixel_accuracy = total.pixel_accuracy();
  report.miou = total.mean_iou();
  if (!output_histograms.empty()) {
    report.style = style_similarity_of_histograms(output_histograms, reference_names, reference_histograms);
    size_t k = 0;
    for (auto& s : report.items)
      if (!s.reference.empty()) s.style = report.style->items[k++];
  }
  if (features) {
    report.features = features->description();
    report.features_user_supplied = features->user_supplied();
    if (!features->user_supplied())
      report.notes.push_back("FID and KID use " + features->description() +
                             ": a yardstick for comparing variants here, never comparable with published FIDs");
  }
  if (features && !options.real_dir.empty() && report.items.size() >= 2) {
    const FeatureSet real = folder_features(*features, options.real_dir, static_cast<int>(width),
                                            static_cast<int>(height), options.real_stats_cache, options.batch_size);
    const Eigen::MatrixXd fake = to_eigen(torch::cat(output_features));
    report.real_images = static_cast<int>(real.features.rows());
    report.fid = frechet_distance(gaussian_stats(fake), real.stats);
    report.kid =
        kernel_inception_distance(fake, real.features, options.kid_subsets, options.kid_subset_size, options.kid_seed);
    if (fake.rows() < fake.cols())
      report.notes.push_back(
          fmt::format("FID from {} images with {}-d features: the covariance is rank-deficient "
                      "and the FID biased upwards; compare KID",
                      fake.rows(), fake.cols()));
  }
  if (report.fid && report.style) {
    report.competition = competition_score(report.mask_accuracy, report.style->mean_own, *report.fid);
    report.notes.push_back(
        "competition score without its aesthetic term (0.2 weight; no aesthetic predictor "
        "here): at most 0.8 x mask accuracy");
  }
  return report;
}

Json ScoreReport::to_json() const {
  auto optional = [](const auto& value) { return value ? Json(*value) : Json(nullptr); };
  Json summary{
      {"images", items.size()},
      {"failed", failures.size()},
      {"mask_accuracy", mask_accuracy},
      {"pixel_accuracy", pixel_accuracy},
      {"miou", miou},
      {"segmenter", segmenter},
      {"fid", optional(fid)},
      {"kid", kid ? Json(kid->mean) : Json(nullptr)},
      {"kid_std", kid && kid->subsets > 1 ? Json(kid->stddev) : Json(nullptr)},  // one subset: no spread
      {"kid_subsets", kid ? Json(kid->subsets) : Json(nullptr)},
      {"kid_subset_size", kid ? Json(kid->subset_size) : Json(nullptr)},
      {"real_images", real_images},
      {"features", features},
      {"features_user_supplied", features_user_supplied},
      {"style_similarity", style ? Json(style->mean_own) : Json(nullptr)},
      {"style_margin", style ? Json(style->mean_margin) : Json(nullptr)},
      {"style_closest_share", style ? Json(style->closest_share) : Json(nullptr)},
      {"style_references", style ? Json(style->references) : Json(nullptr)},
      {"style_measure", fmt::format("Pearson correlation of RGB histograms, {} bins per channel", kHistogramBins)},
      {"notes", notes}};
  if (competition)
    summary["competition"] = {{"score", competition->score},
                              {"mask_accuracy", competition->mask_accuracy},
                              {"style_term", competition->style_term},
                              {"fid_term", competition->fid_term},
                              {"aesthetic_term", nullptr},
                              {"aesthetic_omitted", true}};
  else
    summary["competition"] = nullptr;
  Json per_item = Json::array();
  for (const auto& s : items) {
    Json j{{"name", s.name}, {"mask_accuracy", s.mask_accuracy}, {"miou", s.miou}};
    if (s.style) {
      j["reference"] = s.reference;
      j["style_own"] = s.style->own;
      j["style_others_mean"] = s.style->others_mean;
      j["style_closest"] = s.style->closest;
    }
    per_item.push_back(j);
  }
  Json failed = Json::array();
  for (const auto& f : failures) failed.push_back({{"name", f.name}, {"reason", f.reason}});
  return Json{{"summary", summary}, {"items", per_item}, {"failures", failed}};
}

}  // namespace iidm
