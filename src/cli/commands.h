#pragma once
// One file per sub-command; each registers its options on the app and runs when chosen.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <string>

#include "core/error.h"

namespace iidm::cli {

// Options every command shares.
struct CommonOptions {
  int threads = 0;  // 0: $IIDM_THREADS or the number of cores
  std::string device = "cpu";
};

// A --size value "WIDTHxHEIGHT", e.g. 512x384; each side at least `min`.
struct ImageSize {
  int width = 0, height = 0;
};
inline ImageSize parse_size(const std::string& text, int min = 1) {
  ImageSize s;
  char rest = 0;
  if (std::sscanf(text.c_str(), "%dx%d%c", &s.width, &s.height, &rest) != 2 || s.width < min || s.height < min)
    fail("--size '{}' must be WIDTHxHEIGHT with sides >= {}, e.g. 512x384", text, min);
  return s;
}

// Returns the function that runs the sub-command (exit code) once parsing has succeeded.
std::function<int()> add_check_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_generate_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_batch_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_average_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_make_data_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_train_unet_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_distill_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_train_autoencoder_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_train_segmenter_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_evaluate_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_score_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_ablate_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_bench_command(CLI::App& app, const CommonOptions& common);
std::function<int()> add_serve_command(CLI::App& app, const CommonOptions& common);

}  // namespace iidm::cli
