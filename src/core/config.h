#pragma once
// Reading configs (JSON, in the references' own vocabulary) with validation: every key read is
// recorded, and finish() rejects keys nobody read, so a typo ("channel_mul") is an error that
// names the file and the key instead of a silently ignored setting.
#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace iidm {

using Json = nlohmann::json;

// Parses a JSON file; errors name the file and the parse position.
Json read_json_file(const std::string& path);

class ConfigReader {
 public:
  // `where` names the source in errors, e.g. "configs/iidm.json: unet".
  ConfigReader(Json json, std::string where);

  bool has(const std::string& key) const { return json_.contains(key); }
  const std::string& where() const { return where_; }
  const Json& json() const { return json_; }

  template <typename T>
  T get(const std::string& key, const T& fallback) {
    used_.insert(key);
    if (!json_.contains(key) || json_[key].is_null()) return fallback;
    return convert<T>(key);
  }
  template <typename T>
  T require(const std::string& key) {
    used_.insert(key);
    if (!json_.contains(key)) fail("{}: missing required key '{}'", where_, key);
    return convert<T>(key);
  }
  // A nested object, read by its own reader (whose unknown keys are checked by its finish()).
  ConfigReader child(const std::string& key);
  // Marks keys that are allowed but carry no setting (comments such as "note").
  void ignore(std::initializer_list<const char*> keys);
  // Throws if any key was never read.
  void finish() const;
  // finish(), then config.validate() with this reader's source named in any error.
  template <typename Config>
  Config validated(Config config) const {
    finish();
    try {
      config.validate();
    } catch (const Error& e) {
      fail("{}: {}", where_, e.what());
    }
    return config;
  }

 private:
  template <typename T>
  T convert(const std::string& key) const {
    const Json& value = json_.at(key);
    try {
      if constexpr (std::is_same_v<T, bool>) {
        if (!value.is_boolean()) throw std::invalid_argument("");
      } else if constexpr (std::is_integral_v<T>) {
        if (!value.is_number_integer()) throw std::invalid_argument("");
      } else if constexpr (std::is_floating_point_v<T>) {
        if (!value.is_number()) throw std::invalid_argument("");
      } else if constexpr (std::is_same_v<T, std::string>) {
        if (!value.is_string()) throw std::invalid_argument("");
      }
      return value.get<T>();
    } catch (const std::exception&) {
      fail("{}: key '{}' has the wrong type: {} (expected {})", where_, key, value.dump(),
           type_name<T>());
    }
  }
  template <typename T>
  static const char* type_name() {
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    else if constexpr (std::is_integral_v<T>) return "an integer";
    else if constexpr (std::is_floating_point_v<T>) return "a number";
    else if constexpr (std::is_same_v<T, std::string>) return "a string";
    else return "a list or object of the right kind";
  }

  Json json_;
  std::string where_;
  std::set<std::string> used_;
};

}  // namespace iidm
