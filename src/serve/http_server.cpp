#include "serve/http_server.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "core/fs.h"
#include "core/image.h"
#include "core/labels.h"

namespace iidm {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

// An input error with the HTTP status it earns.
struct HttpError {
  int status;
  std::string message;
};
[[noreturn]] void refuse(int status, std::string message) { throw HttpError{status, std::move(message)}; }

void send_json(httplib::Response& res, const Json& body, int status = 200) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}
void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, {{"error", message}}, status);
}

std::string base64(const uint8_t* data, size_t size) {
  static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  for (size_t i = 0; i < size; i += 3) {
    const uint32_t chunk = (uint32_t{data[i]} << 16) | (i + 1 < size ? uint32_t{data[i + 1]} << 8 : 0) |
                           (i + 2 < size ? uint32_t{data[i + 2]} : 0);
    out += kAlphabet[(chunk >> 18) & 63];
    out += kAlphabet[(chunk >> 12) & 63];
    out += i + 1 < size ? kAlphabet[(chunk >> 6) & 63] : '=';
    out += i + 2 < size ? kAlphabet[chunk & 63] : '=';
  }
  return out;
}

std::string hex_color(const std::array<uint8_t, 3>& rgb) {
  char text[8];
  std::snprintf(text, sizeof text, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
  return text;
}

// Form fields: the text ones parsed strictly, so "12abc" is an error rather than 12.
const std::string* field(const httplib::Request& req, const std::string& name) {
  const auto it = req.files.find(name);
  return it == req.files.end() ? nullptr : &it->second.content;
}
std::optional<int64_t> integer_field(const httplib::Request& req, const std::string& name, int64_t min, int64_t max) {
  const std::string* text = field(req, name);
  if (!text) return std::nullopt;
  const bool digits = !text->empty() && text->size() <= 19 &&
                      std::all_of(text->begin(), text->end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits) refuse(400, fmt::format("{}: '{}' is not a non-negative integer", name, text->substr(0, 40)));
  const int64_t value = std::stoll(*text);
  if (value < min || value > max) refuse(400, fmt::format("{}: {} is outside {}..{}", name, value, min, max));
  return value;
}
std::optional<double> number_field(const httplib::Request& req, const std::string& name) {
  const std::string* text = field(req, name);
  if (!text) return std::nullopt;
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(*text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text->empty() || used != text->size() || !std::isfinite(value))
    refuse(400, fmt::format("{}: '{}' is not a number", name, text->substr(0, 40)));
  return value;
}

// A listing of bundled example files: name (the stem) and URL.
struct Example {
  std::string name, file;
};

}  // namespace

struct EditorServer::Impl {
  GenerationService& service;
  HttpOptions options;
  httplib::Server server;
  std::vector<Example> styles, masks;
  int port = -1;

  Impl(GenerationService& s, HttpOptions o) : service(s), options(std::move(o)) {
    if (!options.log) options.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    list_examples();
    routes();
  }

  void list_examples() {
    if (options.examples_dir.empty()) return;
    if (!fs::is_directory(options.examples_dir)) fail("{}: no such examples folder", options.examples_dir);
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(options.examples_dir))
      if (is_image_file(entry.path())) files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    for (const auto& path : files) {
      const std::string stem = path.stem().string();
      (stem.rfind("mask", 0) == 0 ? masks : styles).push_back({stem, path.filename().string()});
    }
  }

  Json example_list(const std::vector<Example>& examples, const std::string& route) const {
    Json list = Json::array();
    for (const auto& e : examples) list.push_back({{"name", e.name}, {"url", route + e.file}});
    return list;
  }

  void send_example(const std::vector<Example>& examples, const httplib::Request& req, httplib::Response& res) {
    const std::string file = req.matches[1];
    // Only listed files: a name is never a path, so nothing outside the folder can be asked for.
    const auto it = std::find_if(examples.begin(), examples.end(), [&](const Example& e) { return e.file == file; });
    if (it == examples.end()) return send_error(res, 404, fmt::format("no bundled example named '{}'", file));
    const std::string ext = fs::path(file).extension().string();
    res.set_content(read_file((fs::path(options.examples_dir) / file).string()),
                    ext == ".png" ? "image/png" : "image/jpeg");
  }

  // The uploaded label map, checked from its header before it is decoded, at the editor's size
  // unless `native` (generation keeps the size it is given).
  torch::Tensor read_mask(const httplib::Request& req, bool resize) const {
    const std::string* bytes = field(req, "mask");
    if (!bytes) refuse(400, "missing form field 'mask' (a label PNG: grey class ids, 255 = unlabelled)");
    if (const auto dims = png_dimensions_of(*bytes)) {
      if (dims->first * dims->second > service.options().max_pixels)
        refuse(413, fmt::format("mask: {}x{} is larger than this server takes ({} pixels)", dims->first, dims->second,
                                service.options().max_pixels));
    }
    const int W = resize ? static_cast<int>(service.width()) : 0, H = resize ? static_cast<int>(service.height()) : 0;
    try {
      return decode_label_map(*bytes, "mask", W, H)[0];
    } catch (const Error& e) {
      refuse(400, e.what());
    }
  }

  void label_map(const httplib::Request& req, httplib::Response& res) {
    require_multipart(req, {"mask"});
    const torch::Tensor labels = read_mask(req, true);
    // Out-of-range values are refused here too: the page must not paint what it cannot send.
    try {
      check_label_range(labels, service.pipeline().config().unet.num_labels(),
                        service.pipeline().options().ignore_label, "mask");
    } catch (const Error& e) {
      refuse(400, e.what());
    }
    const torch::Tensor bytes = labels.to(torch::kUInt8).contiguous();
    send_json(res, {{"width", labels.size(1)},
                    {"height", labels.size(0)},
                    {"labels", base64(bytes.data_ptr<uint8_t>(), static_cast<size_t>(bytes.numel()))}});
  }

  static void require_multipart(const httplib::Request& req, const std::vector<std::string>& allowed) {
    if (!req.is_multipart_form_data()) refuse(415, "expected a multipart/form-data body");
    for (const auto& [name, value] : req.files)
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end())
        refuse(400,
               fmt::format("unknown form field '{}' (expected: {})", name.substr(0, 40), fmt::join(allowed, ", ")));
  }

  void generate(const httplib::Request& req, httplib::Response& res) {
    require_multipart(req, {"mask", "style", "seed", "preset", "steps", "guidance", "client"});
    EditorRequest request;
    request.labels = read_mask(req, false);
    const std::string* style = field(req, "style");
    if (!style) refuse(400, "missing form field 'style' (an image file: the style reference)");
    try {
      request.style = decode_image(*style, "style", static_cast<int>(request.labels.size(1)),
                                   static_cast<int>(request.labels.size(0)))[0];
    } catch (const Error& e) {
      refuse(400, e.what());
    }
    const auto seed = integer_field(req, "seed", 0, int64_t{1} << 53);  // exact in a JavaScript number
    request.seed = seed ? static_cast<uint64_t>(*seed) : std::random_device{}() & ((uint64_t{1} << 32) - 1);
    if (const std::string* preset = field(req, "preset")) request.preset = *preset;
    if (const auto steps = integer_field(req, "steps", 1, 50)) request.steps = static_cast<int>(*steps);
    request.guidance = number_field(req, "guidance");
    if (const std::string* client = field(req, "client")) {
      if (client->size() > 128) refuse(400, "client: longer than 128 characters");
      request.client = *client;
    }
    EditorResult result;
    try {
      result = service.generate(std::move(request));
    } catch (const Superseded& e) {
      refuse(409, e.what());
    } catch (const QueueFull& e) {
      refuse(503, e.what());  // with Retry-After (guarded)
    } catch (const Error& e) {
      refuse(400, e.what());
    }
    res.set_header("X-Generation-Ms", fmt::format("{:.0f}", result.milliseconds));
    res.set_header("X-Seed", std::to_string(result.seed));
    res.set_header("X-Unet-Forwards", std::to_string(result.unet_forwards));
    res.set_content(result.png, "image/png");
  }

  Json health() const {
    const ServiceStatus status = service.status();
    Json presets = Json::array();
    for (const auto& [name, stages] : service.options().presets) presets.push_back(name);
    return {{"status", "ok"},
            {"width", service.width()},
            {"height", service.height()},
            {"size_multiple", service.pipeline().size_multiple()},
            {"max_pixels", service.options().max_pixels},
            {"ignore_label", service.pipeline().options().ignore_label},
            {"preset", service.options().default_preset},
            {"presets", presets},
            {"busy", status.busy},
            {"queued", status.queued},
            {"served", status.served}};
  }

  Json classes() const {
    Json list = Json::array();
    for (int id = 0; id < service.pipeline().config().unet.num_labels(); ++id) {
      const std::string name =
          id < static_cast<int>(options.class_names.size()) ? options.class_names[id] : fmt::format("class {}", id);
      const auto rgb = id < static_cast<int>(options.class_colors.size()) ? options.class_colors[id] : label_color(id);
      list.push_back({{"id", id}, {"name", name}, {"color", hex_color(rgb)}});
    }
    return {{"ignore_label", service.pipeline().options().ignore_label}, {"classes", list}};
  }

  // Runs a handler, turning what it refuses into the JSON answer.
  template <typename F>
  httplib::Server::Handler guarded(F handler) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      try {
        (this->*handler)(req, res);
      } catch (const HttpError& e) {
        if (e.status == 503) res.set_header("Retry-After", "1");
        send_error(res, e.status, e.message);
      }
    };
  }

  void routes() {
    server.set_payload_max_length(options.max_body_bytes);
    server.Get("/api/health", [this](const httplib::Request&, httplib::Response& res) { send_json(res, health()); });
    server.Get("/api/classes", [this](const httplib::Request&, httplib::Response& res) { send_json(res, classes()); });
    server.Get("/api/styles", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, {{"styles", example_list(styles, "/api/styles/")}});
    });
    server.Get("/api/masks", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, {{"masks", example_list(masks, "/api/masks/")}});
    });
    server.Get(R"(/api/styles/([^/]+))",
               [this](const httplib::Request& req, httplib::Response& res) { send_example(styles, req, res); });
    server.Get(R"(/api/masks/([^/]+))",
               [this](const httplib::Request& req, httplib::Response& res) { send_example(masks, req, res); });
    server.Post("/api/label-map", guarded(&Impl::label_map));
    server.Post("/api/generate", guarded(&Impl::generate));
    for (const char* path : {"/api/generate", "/api/label-map"})
      server.Get(path, [path](const httplib::Request&, httplib::Response& res) {
        send_error(res, 405, fmt::format("{} takes POST with a multipart/form-data body", path));
      });
    if (!options.web_dir.empty() && !server.set_mount_point("/", options.web_dir))
      fail("{}: no such folder (the editor page)", options.web_dir);

    // What httplib answers by itself (no route, a body over the limit, a malformed request) gets a
    // JSON message too; answers that already have one keep it.
    server.set_error_handler(
        httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          std::string message;
          switch (res.status) {
            case 404:
              message = fmt::format("no such page or API route: {} {}", req.method, req.path.substr(0, 200));
              break;
            case 413:
              message = "request body too large";
              break;
            default:
              message = fmt::format("the request could not be served (HTTP {})", res.status);
          }
          send_error(res, res.status, message);
          return httplib::Server::HandlerResponse::Handled;
        }));
    // A failure inside a generation (or anything unforeseen) fails that request only.
    server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr error) {
      std::string message = "internal error";
      try {
        std::rethrow_exception(error);
      } catch (const c10::Error& e) {
        message = e.what_without_backtrace();
      } catch (const std::exception& e) {
        message = e.what();
      } catch (...) {
      }
      send_error(res, 500, "generation failed: " + message);
    });
    server.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
      request_start() = std::chrono::steady_clock::now();
      return httplib::Server::HandlerResponse::Unhandled;
    });
    server.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      auto& start = request_start();
      const bool timed = start != std::chrono::steady_clock::time_point{};
      const double ms =
          timed ? std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count() : 0;
      start = {};
      options.log(fmt::format("{} {} {} {} B {}", req.method, req.path.substr(0, 200), res.status, res.body.size(),
                              timed ? fmt::format("{:.0f} ms", ms) : std::string("-")));
    });
  }

  // Each connection is served on one pool thread from routing to logging.
  static std::chrono::steady_clock::time_point& request_start() {
    thread_local std::chrono::steady_clock::time_point start;
    return start;
  }
};

EditorServer::EditorServer(GenerationService& service, HttpOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {}

EditorServer::~EditorServer() { stop(); }

int EditorServer::bind() {
  auto& o = impl_->options;
  if (o.port < 0 || o.port > 65535) fail("serve: port {} is outside 0..65535", o.port);
  if (o.port == 0) {
    impl_->port = impl_->server.bind_to_any_port(o.host);
    if (impl_->port < 0) fail("serve: cannot bind to {} on any port", o.host);
  } else {
    if (!impl_->server.bind_to_port(o.host, o.port))
      fail("serve: cannot bind to {}:{} (in use, or not an address of this machine)", o.host, o.port);
    impl_->port = o.port;
  }
  return impl_->port;
}

void EditorServer::serve() {
  if (impl_->port < 0) fail("serve: bind() before serve()");
  impl_->server.listen_after_bind();
}

void EditorServer::stop() {
  if (impl_->server.is_running()) impl_->server.stop();
}

}  // namespace iidm
