#include "core/process_stats.h"

#include <fstream>
#include <sstream>

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

}  // namespace iidm
