#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace iidm {

ProgressBar::ProgressBar(std::string label, int64_t total, int64_t already_done) : label_(std::move(label)) {
  tty_ = ::isatty(STDERR_FILENO);
  reset(total, already_done);
}

void ProgressBar::reset(int64_t total, int64_t already_done) {
  total_ = total;
  done_ = base_ = already_done;
  finished_ = false;
  last_logged_decile_ = -1;
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

std::string ProgressBar::format_duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  const int64_t total = static_cast<int64_t>(s + 0.5);
  if (total >= 3600) return fmt::format("{}h{:02}m", total / 3600, (total % 3600) / 60);
  if (total >= 60) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}s", total);
}

double ProgressBar::eta_seconds(int64_t already_done, int64_t done, int64_t total, double elapsed) {
  const int64_t this_run = done - already_done;
  if (!(elapsed > 0) || this_run <= 0) return -1;
  return static_cast<double>(total - done) * elapsed / static_cast<double>(this_run);
}

void ProgressBar::update(int64_t done, const std::string& suffix) {
  done_ = done;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? static_cast<double>(done - base_) / elapsed : 0;
  const double eta = eta_seconds(base_, done, total_, elapsed);
  const int64_t decile = total_ > 0 ? done * 10 / total_ : 0;
  if (tty_) {
    if (done < total_ && std::chrono::duration<double>(now - last_draw_).count() < 0.2) return;
    last_draw_ = now;
    const int width = 28;
    const int filled = total_ > 0 ? static_cast<int>(width * done / total_) : 0;
    std::fprintf(stderr, "\r%s [%s%s] %lld/%lld  %.2f/s  elapsed %s  ETA %s %s\033[K", label_.c_str(),
                 std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), rate, format_duration(elapsed).c_str(),
                 format_duration(eta).c_str(), suffix.c_str());
  } else if (decile != last_logged_decile_) {
    last_logged_decile_ = decile;
    std::fprintf(stderr, "%s %lld/%lld  %.2f/s  elapsed %s  ETA %s %s\n", label_.c_str(), static_cast<long long>(done),
                 static_cast<long long>(total_), rate, format_duration(elapsed).c_str(), format_duration(eta).c_str(),
                 suffix.c_str());
  }
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (tty_) std::fprintf(stderr, "\n");
}

}  // namespace iidm
