// `iidm serve`: the interactive editor. Loads the models once, then serves the page (web/) and its
// HTTP API (src/serve/http_server.h) until interrupted.
#include <csignal>
#include <filesystem>
#include <iostream>

#include "cli/generation_options.h"
#include "core/error.h"
#include "data/landscape.h"
#include "serve/http_server.h"

#ifndef IIDM_SOURCE_DIR
#define IIDM_SOURCE_DIR "."
#endif

namespace iidm::cli {
namespace fs = std::filesystem;

namespace {
EditorServer* running_server = nullptr;
void on_signal(int) {
  // httplib's stop() only shuts the listening socket and flips a flag: safe enough here.
  if (running_server) running_server->stop();
}
}  // namespace

std::function<int()> add_serve_command(CLI::App& app, const CommonOptions& common) {
  auto* cmd = app.add_subcommand("serve", "Serve the interactive editor: paint a layout, pick a style, see the image");
  struct Args {
    GenerationOptions gen;
    std::vector<std::string> presets;
    HttpOptions http;
    std::string size = "256x192";
    int max_queue = 4;
    int64_t max_pixels = 1024 * 1024;
  };
  auto args = std::make_shared<Args>();
  args->gen.preset = "interactive";
  args->http.web_dir = std::string(IIDM_SOURCE_DIR) + "/web";
  args->http.examples_dir = std::string(IIDM_SOURCE_DIR) + "/models/demo/examples";
  args->gen.add_to(cmd);
  cmd->add_option(
         "--presets", args->presets,
         "More presets the page may choose: NAME (configs/presets) or NAME=FILE, e.g. demo=models/demo/preset.json")
      ->delimiter(',');
  cmd->add_option("--host", args->http.host, "Address to listen on (loopback unless told otherwise)")
      ->capture_default_str();
  cmd->add_option("--port", args->http.port, "Port (0: any free one; the chosen one is printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--size", args->size, "The label map the page paints, WIDTHxHEIGHT: the model's training size")
      ->capture_default_str();
  cmd->add_option("--web", args->http.web_dir, "Folder of the page")->capture_default_str();
  cmd->add_option("--examples", args->http.examples_dir,
                  "Folder of bundled examples: mask*.png label maps, other images style references")
      ->capture_default_str();
  cmd->add_option("--max-queue", args->max_queue, "Requests that may wait for the model; more get 503")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-pixels", args->max_pixels, "Largest label map accepted, in pixels")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  return [args, &common]() {
    ServiceOptions service;
    service.default_preset = fs::path(resolve_preset(args->gen.preset)).stem().string();
    service.presets[service.default_preset] = args->gen.stages();
    for (const std::string& entry : args->presets) {
      const size_t eq = entry.find('=');
      const std::string name = eq == std::string::npos ? entry : entry.substr(0, eq);
      const std::string file = resolve_preset(eq == std::string::npos ? entry : entry.substr(eq + 1));
      service.presets[eq == std::string::npos ? fs::path(file).stem().string() : name] = Preset::from_file(file).stages;
    }
    const ImageSize size = parse_size(args->size);
    service.width = size.width;
    service.height = size.height;
    service.max_queue = args->max_queue;
    service.max_pixels = args->max_pixels;
    service.threads = common.threads;

    PipelineOptions options = args->gen.pipeline_options(common);
    // A page keeps its style while the map changes: the reference's latent is remembered rather
    // than encoded again on every stroke (a few per page's worth; each is a few MB at most).
    options.encode_cache = 8;
    Pipeline pipeline = Pipeline::load(args->gen.files, options);
    // A 29-class model is a landscape model (the competition's classes, as the demo's and IIDM's).
    if (pipeline.config().unet.num_labels() == static_cast<int>(kLandscapeClasses.size())) {
      args->http.class_names = kLandscapeClasses;
      args->http.class_colors = kLandscapeClassColors;
    }
    GenerationService generation(std::move(pipeline), service);
    EditorServer server(generation, args->http);
    const int port = server.bind();
    running_server = &server;
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    fmt::print("listening on http://{}:{}\n", args->http.host, port);
    std::fflush(stdout);
    server.serve();
    running_server = nullptr;
    fmt::print(stderr, "serve: stopped\n");
    return 0;
  };
}

}  // namespace iidm::cli
