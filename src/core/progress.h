#pragma once
// A terminal progress bar with rate and ETA, on stderr. Redraws at most a few times a second; when
// stderr is not a terminal it prints a line every ~10 % so logs stay short.
#include <chrono>
#include <cstdint>
#include <string>

namespace iidm {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total);
  void reset(int64_t total);
  void update(int64_t done, const std::string& suffix = "");
  void finish();
  // "1h02m", "3m05s", "12s"
  static std::string format_duration(double seconds);

 private:
  std::string label_;
  int64_t total_ = 0, done_ = 0, last_logged_decile_ = -1;
  bool tty_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace iidm
