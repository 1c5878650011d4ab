#include "core/config.h"

#include "core/fs.h"

namespace iidm {

Json read_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

ConfigReader::ConfigReader(Json json, std::string where) : json_(std::move(json)), where_(std::move(where)) {
  if (!json_.is_object()) fail("{}: expected a JSON object, got {}", where_, json_.dump());
}

ConfigReader ConfigReader::child(const std::string& key) {
  used_.insert(key);
  if (!json_.contains(key)) fail("{}: missing required section '{}'", where_, key);
  return ConfigReader(json_.at(key), where_ + "." + key);
}

void ConfigReader::ignore(std::initializer_list<const char*> keys) {
  for (const char* k : keys) used_.insert(k);
}

void ConfigReader::finish() const {
  std::vector<std::string> unknown;
  for (const auto& item : json_.items())
    if (!used_.count(item.key())) unknown.push_back(item.key());
  if (unknown.empty()) return;
  fail("{}: unknown key{} '{}' (known keys: {})", where_, unknown.size() > 1 ? "s" : "", fmt::join(unknown, "', '"),
       fmt::join(used_, ", "));
}

}  // namespace iidm
