#pragma once
// Reading configs (JSON, in the references' own vocabulary) with validation: every key read is
// recorded, and finish() rejects keys nobody read, so a typo ("channel_mul") is an error that
// names the file and the key instead of a silently ignored setting.
#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
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
      fail("{}: key '{}' has the wrong type: {} (expected {})", where_, key, value.dump(), type_name<T>());
    }
  }
  template <typename T>
  static const char* type_name() {
    if constexpr (std::is_same_v<T, bool>)
      return "true or false";
    else if constexpr (std::is_integral_v<T>)
      return "an integer";
    else if constexpr (std::is_floating_point_v<T>)
      return "a number";
    else if constexpr (std::is_same_v<T, std::string>)
      return "a string";
    else
      return "a list or object of the right kind";
  }

  Json json_;
  std::string where_;
  std::set<std::string> used_;
};

// ---------------------------------------------------------------------------------------------
// Field lists. A config struct names each of its JSON keys once, in a static member template
//
//   template <class Self, class Field>
//   static void fields(Self& c, Field&& field) {
//     field("in_channels", c.in_channels, kRequired);              // absent = error
//     field("dropout", c.dropout);                                 // absent = the member's default
//     field("n_embed", c.n_embed, written_if(c.kind == "vq"));     // left out of the JSON otherwise
//     field("sampler", c.sampler, kSamplerNames);                  // an enum, by name
//     field("unet", c.unet, read_with(&read_unet), kRequired);     // a reader of its own
//   }
//
// (Self is the config, const when writing), and read_fields / write_fields / same_fields run that
// one list to read (with a ConfigReader, so unknown keys stay errors), to write JSON and to
// compare. Members that are configs themselves (they have from_json/to_json) are nested sections,
// std::optional ones sections that may be absent, std::vector ones lists of sections. Checks
// across fields stay in validate().

struct FieldOptions {
  bool required = false;  // absent is an error; otherwise the member keeps its default
  bool written = true;    // false: left out of the JSON (meaningless in this configuration)
};
inline constexpr FieldOptions kRequired{true, true};
constexpr FieldOptions written_if(bool condition) { return FieldOptions{false, condition}; }

// An enum written as a name: {"ddim", Sampler::kDdim}, ...; the first name of a value is written.
template <typename E>
using EnumNames = std::vector<std::pair<std::string, E>>;

// A field read by `read(ConfigReader& parent, const std::string& key)` (which returns the
// member's value) when the key is present or required; written as a plain field.
template <typename F>
struct ReadWith {
  F read;
};
template <typename F>
ReadWith<F> read_with(F read) {
  return ReadWith<F>{std::move(read)};
}

namespace config_detail {
template <typename T, typename = void>
struct IsSection : std::false_type {};
template <typename T>
struct IsSection<T, std::void_t<decltype(T::from_json(std::declval<ConfigReader&>()))>> : std::true_type {};
template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};
template <typename T>
struct IsSectionList : std::false_type {};
template <typename T>
struct IsSectionList<std::vector<T>> : IsSection<T> {};

// A nested config: its own reader (whose finish() and validate() run inside from_json).
template <typename T>
T read_section(ConfigReader& reader, const std::string& key) {
  ConfigReader child = reader.child(key);
  return T::from_json(child);
}

// A list of nested configs, each named "where.key[i]" in errors.
template <typename T>
std::vector<T> read_section_list(ConfigReader& reader, const std::string& key) {
  const Json& list = reader.require<Json>(key);
  if (!list.is_array()) fail("{}: key '{}' must be a list, got {}", reader.where(), key, list.dump());
  std::vector<T> items;
  for (size_t i = 0; i < list.size(); ++i) {
    ConfigReader item(list[i], fmt::format("{}.{}[{}]", reader.where(), key, i));
    items.push_back(T::from_json(item));
  }
  return items;
}

class FieldReader {
 public:
  explicit FieldReader(ConfigReader& reader) : reader_(reader) {}

  template <typename T>
  void operator()(const char* key, T& member, FieldOptions options = {}) {
    if constexpr (IsOptional<T>::value) {
      static_assert(IsSection<typename T::value_type>::value, "optional fields are nested configs");
      reader_.ignore({key});
      if (reader_.has(key)) member = read_section<typename T::value_type>(reader_, key);
    } else if constexpr (IsSection<T>::value) {
      reader_.ignore({key});
      if (options.required || reader_.has(key)) member = read_section<T>(reader_, key);
    } else if constexpr (IsSectionList<T>::value) {
      reader_.ignore({key});
      if (options.required || reader_.has(key)) member = read_section_list<typename T::value_type>(reader_, key);
    } else if (options.required) {
      member = reader_.require<T>(key);
    } else {
      member = reader_.get(key, member);
    }
  }

  template <typename E>
  void operator()(const char* key, E& member, const EnumNames<E>& names, FieldOptions options = {}) {
    reader_.ignore({key});
    if (!options.required && (!reader_.has(key) || reader_.json().at(key).is_null())) return;
    const std::string name = options.required ? reader_.require<std::string>(key) : reader_.get<std::string>(key, "");
    std::vector<std::string> known;
    for (const auto& [candidate, value] : names) {
      if (candidate == name) {
        member = value;
        return;
      }
      known.push_back(candidate);
    }
    fail("{}: key '{}' has the unknown value '{}' (expected one of: {})", reader_.where(), key, name,
         fmt::join(known, ", "));
  }

  template <typename T, typename F>
  void operator()(const char* key, T& member, const ReadWith<F>& custom, FieldOptions options = {}) {
    reader_.ignore({key});
    if (options.required || reader_.has(key)) member = custom.read(reader_, key);
  }

 private:
  ConfigReader& reader_;
};

class FieldWriter {
 public:
  template <typename T>
  void operator()(const char* key, const T& member, FieldOptions options = {}) {
    if (!options.written) return;
    if constexpr (IsOptional<T>::value) {
      if (member) json_[key] = member->to_json();
    } else if constexpr (IsSection<T>::value) {
      json_[key] = member.to_json();
    } else if constexpr (IsSectionList<T>::value) {
      Json list = Json::array();
      for (const auto& item : member) list.push_back(item.to_json());
      json_[key] = std::move(list);
    } else {
      json_[key] = member;
    }
  }

  template <typename E>
  void operator()(const char* key, const E& member, const EnumNames<E>& names, FieldOptions options = {}) {
    if (!options.written) return;
    for (const auto& [name, value] : names) {
      if (value == member) {
        json_[key] = name;
        return;
      }
    }
    fail("config: key '{}' holds a value ({}) that has no name", key, static_cast<long long>(member));
  }

  template <typename T, typename F>
  void operator()(const char* key, const T& member, const ReadWith<F>&, FieldOptions options = {}) {
    (*this)(key, member, options);
  }

  Json json_ = Json::object();
};

// same_fields' two passes: the addresses of b's fields, then a's fields compared with them in the
// same order (the one list visits the same members of the same types both times).
struct FieldAddresses {
  template <typename T, typename... Options>
  void operator()(const char*, const T& member, const Options&...) {
    addresses.push_back(&member);
  }
  std::vector<const void*> addresses;
};

template <typename T>
bool same_value(const T& a, const T& b);

struct FieldComparer {
  template <typename T, typename... Options>
  void operator()(const char*, const T& member, const Options&...) {
    equal = equal && same_value(member, *static_cast<const T*>(others[next]));
    ++next;
  }
  const std::vector<const void*>& others;
  size_t next = 0;
  bool equal = true;
};
}  // namespace config_detail

// Reads every field of `config` listed by Config::fields; the caller runs finish()/validated().
template <typename Config>
void read_fields(ConfigReader& reader, Config& config) {
  Config::fields(config, config_detail::FieldReader(reader));
}

// The JSON object of every written field (nested configs by their to_json()).
template <typename Config>
Json write_fields(const Config& config) {
  config_detail::FieldWriter writer;
  Config::fields(config, writer);
  return std::move(writer.json_);
}

// Whether every listed field (nested configs field by field) is equal; doubles compare exactly.
template <typename Config>
bool same_fields(const Config& a, const Config& b) {
  config_detail::FieldAddresses of_b;
  Config::fields(b, of_b);
  config_detail::FieldComparer comparer{of_b.addresses};
  Config::fields(a, comparer);
  return comparer.equal;
}

namespace config_detail {
template <typename T>
bool same_value(const T& a, const T& b) {
  if constexpr (IsOptional<T>::value) {
    return a.has_value() == b.has_value() && (!a || same_value(*a, *b));
  } else if constexpr (IsSection<T>::value) {
    return same_fields(a, b);
  } else if constexpr (IsSectionList<T>::value) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (!same_fields(a[i], b[i])) return false;
    return true;
  } else {
    return a == b;
  }
}
}  // namespace config_detail

}  // namespace iidm
