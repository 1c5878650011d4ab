// `iidm ablate` as users run it, on the bundled demo models: two variants over a small validation
// set give the tables, the grid and per-variant scores; a second run makes no image again and
// gives the same scores; tools/ablation_report.py turns the result into charts and an HTML report.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/config.h"
#include "core/fs.h"
#include "core/image.h"
#include "test_util.h"

namespace iidm {
namespace {
namespace fs = std::filesystem;

int64_t count_png(const std::string& dir) {
  int64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".png";
  return n;
}

int run(const std::string& command, const std::string& log) {
  const int status = std::system((command + " > \"" + log + "\" 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(AblateCli, TwoVariantsAreRunScoredTabulatedAndResumed) {
  test::TempDir dir;
  const std::string cli = std::string("\"") + IIDM_CLI + "\" --threads 2 ",
                    demo = std::string(IIDM_SOURCE_DIR) + "/models/demo/";
  const std::string log = dir.file("log.txt"), out = dir.file("ablation");
  ASSERT_EQ(run(cli + "make-data --out " + dir.file("data") + " --count 3 --size 64x48 --seed 5", log), 0)
      << read_file(log);
  std::ofstream(dir.file("variants.json")) << R"({"variants": [
      {"name": "base", "flags": []},
      {"name": "dpm", "flags": ["--sampler", "dpm++2m", "--seed", "1", "--refine", "2"]}]})";
  const std::string ablate = cli + "ablate --variants " + dir.file("variants.json") + " --data " + dir.file("data") +
                             " --out " + out + " --model " + demo + "model.json --unet " + demo +
                             "unet.safetensors --autoencoder " + demo + "autoencoder.safetensors --preset " + demo +
                             "preset.json --refine 1 --steps ddim4 --segmenter " + demo +
                             "segmenter.safetensors --segmenter-config " + demo +
                             "segmenter.json --diversity-maps 2 --diversity-samples 2 --grid-examples 2";
  ASSERT_EQ(run(ablate, log), 0) << read_file(log);

  const Json results = read_json_file(out + "/results.json");
  ASSERT_EQ(results["variants"].size(), 2u);
  EXPECT_EQ(results["variants"][1]["name"], "dpm");
  for (const auto& v : results["variants"]) {
    for (const char* key : {"mask_accuracy", "miou", "style_similarity", "fid", "kid", "diversity", "score"})
      EXPECT_TRUE(v["metrics"][key].is_number()) << v["name"] << " " << key;
    EXPECT_GT(v["cost"]["nfe"].get<int>(), 0);
    EXPECT_GT(v["cost"]["seconds_per_image"].get<double>(), 0.0);
    EXPECT_GT(v["cost"]["peak_rss_mib"].get<double>(), 0.0);
  }
  EXPECT_NE(results["variants"][1]["description"].get<std::string>().find("dpm++2m"), std::string::npos);
  // 3 images + 2 extra diversity samples per variant.
  EXPECT_EQ(count_png(out + "/variants/dpm/images"), 3);
  EXPECT_EQ(count_png(out + "/variants/dpm/diversity"), 2);
  // grid.png: 2 rows of mask | reference | base | dpm.
  const auto grid = read_image(out + "/grid.png");
  EXPECT_EQ(grid.size(2), 2 * 48);
  EXPECT_EQ(grid.size(3), 4 * 64);
  const std::string csv = read_file(out + "/results.csv"), md = read_file(out + "/results.md");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);
  EXPECT_NE(md.find("| dpm |"), std::string::npos) << md;
  // Every table row has as many cells as the header (stage separators inside cells are escaped).
  const auto cells = [](const std::string& line) {
    int n = 0;
    for (size_t i = 0; i < line.size(); ++i) n += line[i] == '|' && (i == 0 || line[i - 1] != '\\');
    return n;
  };
  std::istringstream lines(md);
  std::string line;
  int header = -1, rows = 0;
  while (std::getline(lines, line))
    if (!line.empty() && line[0] == '|') {
      if (header < 0) header = cells(line);
      EXPECT_EQ(cells(line), header) << line;
      ++rows;
    }
  EXPECT_EQ(rows, 4);  // header, rule, two variants

  // A second run generates nothing and scores the same.
  const std::string first_image = read_file(out + "/variants/base/images/00000.png");
  ASSERT_EQ(run(ablate, log), 0) << read_file(log);
  EXPECT_NE(read_file(log).find("(10 already made)"), std::string::npos) << read_file(log);
  EXPECT_EQ(read_file(out + "/variants/base/images/00000.png"), first_image);
  const Json again = read_json_file(out + "/results.json");
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(again["variants"][i]["metrics"], results["variants"][i]["metrics"]);
    EXPECT_EQ(again["variants"][i]["cost"]["seconds_per_image"], results["variants"][i]["cost"]["seconds_per_image"]);
  }

  // The report: charts and one self-contained HTML file.
  ASSERT_EQ(run("/usr/bin/python3 " + std::string(IIDM_SOURCE_DIR) + "/tools/ablation_report.py " + out, log), 0)
      << read_file(log);
  for (const char* file : {"chart_nfe.png", "chart_seconds.png", "report.html"})
    EXPECT_TRUE(fs::exists(out + "/" + file)) << file;

  // A variant flag the generation options do not know is refused, naming the variant.
  std::ofstream(dir.file("bad.json")) << R"({"variants": [{"name": "x", "flags": ["--no-such-flag"]}]})";
  const std::string bad = ablate.substr(0, ablate.find(" --variants")) + " --variants " + dir.file("bad.json") +
                          ablate.substr(ablate.find(" --data"));
  EXPECT_NE(run(bad, log), 0);
  EXPECT_NE(read_file(log).find("variant 'x'"), std::string::npos) << read_file(log);
}

}  // namespace
}  // namespace iidm
