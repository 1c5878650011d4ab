#include "core/process_stats.h"

#include <fstream>
#include <sstream>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace iidm {

namespace {
std::string field_of(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0) {
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      const auto start = line.find_first_not_of(" \t", colon + 1);
      return start == std::string::npos ? "" : line.substr(start);
    }
  return "";
}
}  // namespace

double peak_rss_mib() {
  std::istringstream value(field_of("/proc/self/status", "VmHWM"));  // "123456 kB"
  double kib = 0;
  value >> kib;
  return kib / 1024.0;
}

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

std::string cpu_model_name() {
  const std::string name = field_of("/proc/cpuinfo", "model name");
  return name.empty() ? "unknown" : name;
}

bool cpu_has_flag(const std::string& flag) {
  std::istringstream flags(field_of("/proc/cpuinfo", "flags"));
  std::string f;
  while (flags >> f)
    if (f == flag) return true;
  return false;
}

int64_t available_memory_bytes() {
  std::istringstream value(field_of("/proc/meminfo", "MemAvailable"));
  double kib = 0;
  value >> kib;
  return static_cast<int64_t>(kib * 1024);
}

int64_t allocator_free_bytes() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.fordblks);
#else
  return 0;
#endif
}

}  // namespace iidm
