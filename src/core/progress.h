#pragma once
// A terminal progress bar with rate and ETA, on stderr. Redraws at most a few times a second; when
// stderr is not a terminal it prints a line every ~10 % so logs stay short.
#include <chrono>
#include <cstdint>
#include <string>

namespace iidm {

class ProgressBar {
 public:
  // `already_done`: units finished before this run (a resumed job); the rate and the ETA count only
  // the work done since, or a run resumed at 1000/3000 would report 1000 steps in its first second.
  ProgressBar(std::string label, int64_t total, int64_t already_done = 0);
  void reset(int64_t total, int64_t already_done = 0);
  void update(int64_t done, const std::string& suffix = "");
  void finish();
  // "1h02m", "3m05s", "12s"
  static std::string format_duration(double seconds);
  // Seconds left at the rate of this run; negative when no rate is known yet.
  static double eta_seconds(int64_t already_done, int64_t done, int64_t total, double elapsed);

 private:
  std::string label_;
  int64_t total_ = 0, done_ = 0, base_ = 0, last_logged_decile_ = -1;
  bool tty_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace iidm
