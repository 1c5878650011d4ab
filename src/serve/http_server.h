#pragma once
// The HTTP side of `iidm serve` (cpp-httplib): the editor page as static files, and a small JSON
// API over a GenerationService. Every request is answered: input errors with a 4xx and a JSON
// message naming the field and the problem, failures of a generation with a 500; the process never
// stops on input. One log line per request (method, path, status, response bytes, milliseconds).
//
//   GET  /api/health              model size, presets, queue state
//   GET  /api/classes             [{id, name, color}] and the unlabelled value
//   GET  /api/styles, /api/masks  the bundled example references and label maps, with their URLs
//   POST /api/label-map           multipart `mask` -> {width, height, labels: base64 class ids},
//                                 read as `generate` reads it (palette PNGs give their indices)
//   POST /api/generate            multipart `mask`, `style`, optional `seed`, `preset`, `steps`,
//                                 `guidance`, `client` -> image/png
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "serve/generation_service.h"

namespace iidm {

struct HttpOptions {
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0: any free port (bind() says which)
  std::string web_dir;             // the page: index.html and its files
  // Bundled examples: label maps named mask*.png, every other image a style reference.
  std::string examples_dir;
  std::vector<std::string> class_names;  // by id; missing names read "class N"
  // By id; missing colours are core/labels' label_color (the sample grids' palette).
  std::vector<std::array<uint8_t, 3>> class_colors;
  size_t max_body_bytes = 16 << 20;  // larger requests get 413 before they are read
  // Where the per-request lines go (default: stderr).
  std::function<void(const std::string&)> log;
};

class EditorServer {
 public:
  EditorServer(GenerationService& service, HttpOptions options);
  ~EditorServer();
  EditorServer(const EditorServer&) = delete;
  EditorServer& operator=(const EditorServer&) = delete;

  // Binds the socket and returns the port (the chosen one for port 0); errors name host and port.
  int bind();
  // Serves until stop() (from another thread or a signal handler's thread); call bind() first.
  void serve();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace iidm
