#include "pipeline/ablation.h"

#include <torch/torch.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <regex>

#include "core/error.h"
#include "core/fs.h"
#include "core/image.h"
#include "core/labels.h"
#include "core/process_stats.h"
#include "data/dataset.h"
#include "postprocess/grid.h"

namespace iidm {
namespace fs = std::filesystem;
using torch::Tensor;

void VariantSpec::validate() const {
  static const std::regex valid_name("[A-Za-z0-9._+-]+");
  if (!std::regex_match(name, valid_name))
    fail("variant name '{}' may only hold letters, digits and . _ + - (it names a folder)", name);
}

VariantSpec VariantSpec::from_json(ConfigReader& reader) {
  VariantSpec spec;
  read_fields(reader, spec);
  return reader.validated(spec);
}

Json VariantSpec::to_json() const { return write_fields(*this); }

void VariantsFile::validate() const {
  if (variants.empty()) fail("no variants");
  for (size_t i = 0; i < variants.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (variants[i].name == variants[j].name) fail("two variants are named '{}'", variants[i].name);
}

VariantsFile VariantsFile::from_json(ConfigReader& reader) {
  VariantsFile file;
  read_fields(reader, file);
  return reader.validated(file);
}

VariantsFile VariantsFile::from_file(const std::string& path) {
  ConfigReader reader(read_json_file(path), path);
  return from_json(reader);
}

Json VariantsFile::to_json() const { return write_fields(*this); }

namespace {

struct DataSet {
  std::vector<SamplePaths> pairs;
  std::vector<RunItem> items;            // one per pair, reference = another pair's image
  std::vector<RunItem> diversity_items;  // extra samples: "<stem>~s<k>"
  int width = 0, height = 0;
};

DataSet load_data(const AblationData& data, const AblationOptions& options) {
  DataSet set;
  set.pairs = list_landscape_pairs(data.root);
  if (data.count > 0) {
    if (static_cast<int>(set.pairs.size()) < data.count)
      fail("{}: has {} items, the ablation asks for {}", data.root, set.pairs.size(), data.count);
    set.pairs.resize(static_cast<size_t>(data.count));
  }
  const int n = static_cast<int>(set.pairs.size());
  if (n < 2) fail("{}: an ablation needs at least 2 items", data.root);
  if (data.reference_offset % n == 0) fail("ablation: the reference offset must not be a multiple of {}", n);
  const Tensor first = read_label_map(set.pairs[0].labels);
  set.height = static_cast<int>(first.size(1)), set.width = static_cast<int>(first.size(2));
  for (int i = 0; i < n; ++i) {
    const auto& p = set.pairs[static_cast<size_t>(i)];
    set.items.push_back({p.stem, p.labels, set.pairs[static_cast<size_t>((i + data.reference_offset) % n)].image, ""});
  }
  for (int i = 0; i < std::min(options.diversity_maps, n); ++i)
    for (int k = 1; k < options.diversity_samples; ++k) {
      RunItem extra = set.items[static_cast<size_t>(i)];
      extra.name += "~s" + std::to_string(k);  // another name: another seed
      set.diversity_items.push_back(extra);
    }
  return set;
}

int64_t count_existing(const std::string& dir, const std::vector<RunItem>& items) {
  int64_t n = 0;
  for (const auto& item : items) n += fs::exists(fs::path(dir) / (item.name + ".png"));
  return n;
}

Json optional_json(const std::optional<double>& v) { return v ? Json(*v) : Json(nullptr); }

// The table row of a scored variant: what results.json, .csv and .md show.
Json result_row(const ScoreReport& score, const DiversityResult& diversity, const VariantCost& cost,
                const std::vector<RunFailure>& failures) {
  Json metrics{{"mask_accuracy", score.mask_accuracy},
               {"miou", score.miou},
               {"style_similarity", score.style ? Json(score.style->mean_own) : Json(nullptr)},
               {"style_margin", score.style ? Json(score.style->mean_margin) : Json(nullptr)},
               {"style_closest_share", score.style ? Json(score.style->closest_share) : Json(nullptr)},
               {"fid", optional_json(score.fid)},
               {"kid", score.kid ? Json(score.kid->mean) : Json(nullptr)},
               {"kid_std", score.kid && score.kid->subsets > 1 ? Json(score.kid->stddev) : Json(nullptr)},
               {"diversity", diversity.groups ? Json(diversity.mean) : Json(nullptr)},
               {"score", score.competition ? Json(score.competition->score) : Json(nullptr)},
               {"images", score.items.size()}};
  Json c{{"nfe", cost.nfe},
         {"seconds_per_image", cost.images_timed ? Json(cost.seconds_per_image) : Json(nullptr)},
         {"images_per_hour", cost.images_timed ? Json(cost.images_per_hour) : Json(nullptr)},
         {"peak_rss_mib", cost.peak_rss_mib > 0 ? Json(cost.peak_rss_mib) : Json(nullptr)}};
  Json failed = Json::array();
  for (const auto& f : failures) failed.push_back({{"name", f.name}, {"reason", f.reason}});
  for (const auto& f : score.failures) failed.push_back({{"name", f.name}, {"reason", f.reason}});
  return Json{{"metrics", metrics},
              {"cost", c},
              {"diversity_measure", diversity.measure},
              {"notes", score.notes},
              {"failures", failed}};
}

}  // namespace

std::vector<VariantResult> run_ablation(const std::vector<AblationVariant>& variants, const AblationData& data,
                                        const AblationOptions& options, const AblationNetworks& networks,
                                        const AblationCallbacks& callbacks) {
  if (!networks.segmenter) fail("ablation: needs a segmentation network");
  if (variants.empty()) fail("ablation: no variants");
  const DataSet set = load_data(data, options);
  const fs::path out(options.out_dir);
  fs::create_directories(out);

  int64_t total = 0, already = 0;
  const int64_t per_variant = static_cast<int64_t>(set.items.size() + set.diversity_items.size());
  for (const auto& v : variants) {
    const fs::path dir = out / "variants" / v.name;
    total += per_variant;
    already += count_existing((dir / "images").string(), set.items) +
               count_existing((dir / "diversity").string(), set.diversity_items);
  }
  if (callbacks.on_plan) callbacks.on_plan(total, already);
  int64_t done_images = already;

  std::vector<VariantResult> results;
  for (const auto& v : variants) {
    if (callbacks.on_variant) callbacks.on_variant(v.name);
    const fs::path dir = out / "variants" / v.name;
    fs::create_directories(dir);
    VariantResult result;
    result.variant = v;

    // Generation: missing images only; the time and the peak memory of what this run makes are
    // added to the variant's cost file, so a resumed variant still reports its full cost.
    const fs::path cost_path = dir / "cost.json";
    VariantCost& cost = result.cost;
    if (fs::exists(cost_path)) {
      const Json c = read_json_file(cost_path.string());
      cost.nfe = c.value("nfe", int64_t{0});
      cost.images_timed = c.value("images_timed", int64_t{0});
      cost.seconds_per_image = c.value("seconds_total", 0.0);  // a sum until divided below
      cost.peak_rss_mib = c.value("peak_rss_mib", 0.0);
    }
    const int64_t missing = per_variant - count_existing((dir / "images").string(), set.items) -
                            count_existing((dir / "diversity").string(), set.diversity_items);
    std::vector<RunFailure> failures;
    if (missing > 0) {
      reset_peak_rss();
      Pipeline pipeline = Pipeline::load(v.files, v.pipeline);
      RunOptions run;
      run.extension = "png";
      run.width = set.width, run.height = set.height;
      run.batch_size = options.batch_size;
      run.seed = v.seed;
      run.stages = v.stages;
      RunCallbacks progress;
      progress.on_image = [&](int64_t, int64_t) {
        if (callbacks.on_image) callbacks.on_image(++done_images);
      };
      double seconds = 0;
      int64_t produced = 0;
      for (const auto& [folder, items] :
           {std::pair{std::string("images"), &set.items}, std::pair{std::string("diversity"), &set.diversity_items}}) {
        if (items->empty()) continue;
        run.out_dir = (dir / folder).string();
        GenerationRunner runner(pipeline, run);
        const RunSummary summary = runner.run(*items, {}, progress);
        seconds += summary.seconds, produced += summary.produced;
        if (summary.unet_forwards_per_image) cost.nfe = summary.unet_forwards_per_image;
        failures.insert(failures.end(), summary.failures.begin(), summary.failures.end());
      }
      cost.images_timed += produced;
      cost.seconds_per_image += seconds;
      cost.peak_rss_mib = std::max(cost.peak_rss_mib, peak_rss_mib());
      write_file_atomic(cost_path.string(), Json{{"nfe", cost.nfe},
                                                 {"images_timed", cost.images_timed},
                                                 {"seconds_total", cost.seconds_per_image},
                                                 {"peak_rss_mib", cost.peak_rss_mib}}
                                                    .dump(1) +
                                                "\n");
    }
    if (cost.images_timed) {
      cost.seconds_per_image /= static_cast<double>(cost.images_timed);
      cost.images_per_hour = 3600.0 / cost.seconds_per_image;
    }

    // Scores: of the images on disk (8-bit, as a resumed run reads them back).
    const fs::path scored_path = dir / "metrics.json";
    const bool complete = failures.empty() && count_existing((dir / "images").string(), set.items) ==
                                                  static_cast<int64_t>(set.items.size());
    std::vector<ScoreItem> score_items;
    for (const auto& item : set.items)
      score_items.push_back(
          {item.name, (dir / "images" / (item.name + ".png")).string(), item.label_file, item.reference});
    ScoreOptions score_options = options.score;
    score_options.real_dir = (fs::path(data.root) / "imgs").string();
    if (score_options.real_stats_cache.empty())
      score_options.real_stats_cache = (out / "real-stats.safetensors").string();
    result.score = score_images(score_items, *networks.segmenter, networks.features, score_options);
    std::vector<std::vector<Tensor>> groups;
    for (int i = 0; i < std::min(options.diversity_maps, static_cast<int>(set.items.size())); ++i) {
      std::vector<Tensor> group;
      const std::string main = (dir / "images" / (set.items[static_cast<size_t>(i)].name + ".png")).string();
      if (fs::exists(main)) group.push_back(read_image(main)[0]);
      for (int k = 1; k < options.diversity_samples; ++k) {
        const fs::path extra =
            dir / "diversity" / (set.items[static_cast<size_t>(i)].name + "~s" + std::to_string(k) + ".png");
        if (fs::exists(extra)) group.push_back(read_image(extra.string())[0]);
      }
      groups.push_back(group);
    }
    result.diversity = sample_diversity(groups, networks.lpips);
    Json row = result_row(result.score, result.diversity, cost, failures);
    row["complete"] = complete;
    write_file_atomic(scored_path.string(), row.dump(1) + "\n");
    results.push_back(std::move(result));
  }
  return results;
}

namespace {

struct Column {
  const char* key;
  const char* label;
  const char* group;
  int digits;
};
const std::vector<Column> kColumns = {
    {"mask_accuracy", "mask acc", "metrics", 3},
    {"miou", "mIoU", "metrics", 3},
    {"style_similarity", "style", "metrics", 3},
    {"style_closest_share", "style top-1", "metrics", 2},
    {"fid", "FID*", "metrics", 2},
    {"kid", "KID*", "metrics", 4},
    {"kid_std", "KID sd", "metrics", 4},
    {"diversity", "diversity", "metrics", 3},
    {"score", "score", "metrics", 3},
    {"nfe", "NFE", "cost", 0},
    {"seconds_per_image", "s/img", "cost", 2},
    {"images_per_hour", "img/h", "cost", 0},
    {"peak_rss_mib", "peak RSS MiB", "cost", 0},
};

std::string cell(const Json& value, int digits) {
  if (value.is_null()) return "—";
  if (value.is_number_integer()) return std::to_string(value.get<int64_t>());
  return fmt::format("{:.{}f}", value.get<double>(), digits);
}

}  // namespace

void write_ablation_results(const std::vector<VariantResult>& results, const AblationData& data,
                            const AblationOptions& options, const std::string& machine) {
  const fs::path out(options.out_dir);
  const DataSet set = load_data(data, options);
  Json variants = Json::array();
  std::string csv = "name,description";
  std::string md = "| variant | stages | ";
  std::string md_rule = "| --- | --- | ";
  for (const auto& c : kColumns) {
    csv += std::string(",") + c.key;
    md += std::string(c.label) + " | ";
    md_rule += "--- | ";
  }
  csv += "\n";
  md += "\n" + md_rule + "\n";
  std::vector<std::string> notes;
  for (const auto& r : results) {
    const Json row = read_json_file((out / "variants" / r.variant.name / "metrics.json").string());
    Json v{{"name", r.variant.name},   {"description", r.variant.description},
           {"flags", r.variant.flags}, {"metrics", row["metrics"]},
           {"cost", row["cost"]},      {"failures", row["failures"]}};
    variants.push_back(v);
    csv += fmt::format("{},\"{}\"", r.variant.name, r.variant.description);
    std::string description = r.variant.description;  // its stage separators would split the Markdown cell
    for (size_t at = description.find('|'); at != std::string::npos; at = description.find('|', at + 2))
      description.replace(at, 1, "\\|");
    md += fmt::format("| {} | {} | ", r.variant.name, description);
    for (const auto& c : kColumns) {
      const Json& value = row[c.group][c.key];
      csv += "," + (value.is_null() ? std::string() : value.dump());
      md += cell(value, c.digits) + " | ";
    }
    csv += "\n";
    md += "\n";
    for (const auto& n : row["notes"])
      if (std::find(notes.begin(), notes.end(), n.get<std::string>()) == notes.end()) notes.push_back(n);
    if (!row["failures"].empty())
      notes.push_back(fmt::format("{}: {} image(s) failed, first: {}", r.variant.name, row["failures"].size(),
                                  row["failures"][0]["reason"].get<std::string>()));
  }
  if (!results.empty() && results[0].diversity.groups)
    notes.push_back(
        fmt::format("diversity: mean pairwise {} over {} samples of each of {} label maps",
                    results[0].diversity.measure == "lpips" ? "LPIPS" : "RMS pixel difference ([0, 1] scale)",
                    options.diversity_samples, results[0].diversity.groups));
  notes.push_back(
      "style: Pearson correlation of RGB colour histograms (32 bins per channel) with the image's own "
      "reference; style top-1: share of images closer to their own reference than to any other");
  notes.push_back(
      "score: the competition's mask_acc x (0.3 (0.5 style + 0.5) + 0.5 (100 - FID)/100), without "
      "its 0.2 aesthetic term");

  // The grid: mask | reference | every variant, for the first few items.
  std::vector<std::vector<Tensor>> rows;
  for (int i = 0; i < std::min(options.grid_examples, static_cast<int>(set.items.size())); ++i) {
    const RunItem& item = set.items[static_cast<size_t>(i)];
    std::vector<Tensor> row{colorize_labels(read_label_map(item.label_file)),
                            read_image(item.reference, set.width, set.height)[0]};
    bool complete = true;
    for (const auto& r : results) {
      const fs::path image = out / "variants" / r.variant.name / "images" / (item.name + ".png");
      if (!fs::exists(image)) {
        complete = false;
        break;
      }
      row.push_back(read_image(image.string())[0]);
    }
    if (complete) rows.push_back(row);
  }
  if (!rows.empty()) write_image((out / "grid.png").string(), image_grid(rows));

  std::string column_order = "mask | reference";
  for (const auto& r : results) column_order += " | " + r.variant.name;
  notes.push_back("grid.png columns: " + column_order);
  Json columns = Json::array();
  for (const auto& c : kColumns)
    columns.push_back({{"key", c.key}, {"label", c.label}, {"group", c.group}, {"digits", c.digits}});
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  const Json results_json{
      {"title", "iidm ablation"},
      {"machine", machine},
      {"date", date},
      {"data", fmt::format("{} ({} items, {}x{})", data.root, set.items.size(), set.width, set.height)},
      {"items", set.items.size()},
      {"primary_metric", "score"},
      {"primary_metric_label", "competition score without the aesthetic term (higher is better)"},
      {"grid", rows.empty() ? Json(nullptr) : Json("grid.png")},
      {"columns", columns},
      {"variants", variants},
      {"notes", notes}};
  write_file_atomic((out / "results.json").string(), results_json.dump(1) + "\n");
  write_file_atomic((out / "results.csv").string(), csv);
  std::string md_notes;
  for (const auto& n : notes) md_notes += "- " + n + "\n";
  write_file_atomic((out / "results.md").string(),
                    fmt::format("# {}\n\n{}; {}\n\n{}\n{}", "iidm ablation", results_json["data"].get<std::string>(),
                                machine, md, md_notes));
}

}  // namespace iidm
