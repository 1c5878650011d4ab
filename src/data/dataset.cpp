#include "data/dataset.h"

#include <torch/torch.h>

#include <filesystem>
#include <map>

#include "core/error.h"
#include "core/image.h"
#include "core/labels.h"

namespace iidm {
namespace fs = std::filesystem;

std::vector<SamplePaths> list_landscape_pairs(const std::string& root) {
  const fs::path imgs = fs::path(root) / "imgs", labels = fs::path(root) / "labels";
  if (!fs::is_directory(imgs) || !fs::is_directory(labels))
    fail("{}: expected the competition layout imgs/*.jpg + labels/*.png", root);
  std::map<std::string, std::string> images, maps;
  for (const auto& e : fs::directory_iterator(imgs)) {
    const std::string ext = e.path().extension().string();
    if (ext == ".jpg" || ext == ".jpeg" || ext == ".png") images[e.path().stem().string()] = e.path().string();
  }
  for (const auto& e : fs::directory_iterator(labels))
    if (e.path().extension() == ".png") maps[e.path().stem().string()] = e.path().string();
  std::vector<std::string> unmatched;
  std::vector<SamplePaths> pairs;
  for (const auto& [stem, path] : images) {
    auto it = maps.find(stem);
    if (it == maps.end())
      unmatched.push_back(path + " (no labels/" + stem + ".png)");
    else
      pairs.push_back({stem, path, it->second});
  }
  for (const auto& [stem, path] : maps)
    if (!images.count(stem)) unmatched.push_back(path + " (no imgs/" + stem + ".jpg)");
  if (!unmatched.empty()) {
    std::string list;
    for (size_t i = 0; i < unmatched.size() && i < 5; ++i) list += "\n  " + unmatched[i];
    if (unmatched.size() > 5) list += fmt::format("\n  ... and {} more", unmatched.size() - 5);
    fail("{}: {} unmatched file(s):{}", root, unmatched.size(), list);
  }
  if (pairs.empty()) fail("{}: no image/label pairs found", root);
  return pairs;
}

Sample load_sample(const SamplePaths& p, int width, int height, bool flip, int num_classes, int64_t ignore_label) {
  Sample s;
  s.image = read_image(p.image, width, height)[0];
  s.labels = read_label_map(p.labels, width, height)[0];
  if (s.image.size(1) != s.labels.size(0) || s.image.size(2) != s.labels.size(1))
    fail("{}: labels are {}x{} but the image {} is {}x{}", p.labels, s.labels.size(1), s.labels.size(0), p.image,
         s.image.size(2), s.image.size(1));
  check_label_range(s.labels, num_classes, ignore_label, p.labels);
  if (flip) {
    s.image = s.image.flip({2});
    s.labels = s.labels.flip({1});
  }
  return s;
}

}  // namespace iidm
