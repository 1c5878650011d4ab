#pragma once
// One exception type for everything a user can get wrong (files, configs, inputs), so the CLI can
// print the message and exit non-zero while programming errors still surface as other exceptions.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace iidm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws iidm::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace iidm
