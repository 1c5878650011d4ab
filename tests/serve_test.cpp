// `iidm serve` ([8/8]): a real HTTP server on a loopback port, over the bundled demo model. It
// answers every route, gives the library's own image for a request, refuses bad requests with a
// 4xx and a JSON message naming the problem and keeps serving after them, and lets a newer request
// of a page supersede its queued older one within a bounded queue.
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/fs.h"
#include "core/image.h"
#include "core/labels.h"
#include "core/runtime.h"
#include "data/landscape.h"
#include "serve/http_server.h"
#include "test_util.h"

namespace iidm {
namespace {
using Json = nlohmann::json;
using torch::Tensor;

const std::string kDemo = std::string(IIDM_SOURCE_DIR) + "/models/demo/";

Pipeline demo_pipeline() {
  ModelFiles files;
  files.config = kDemo + "model.json";
  files.unets = {kDemo + "unet.safetensors"};
  files.autoencoder = kDemo + "autoencoder.safetensors";
  return Pipeline::load(files, PipelineOptions{});
}

ServiceOptions demo_service(int max_queue = 4) {
  ServiceOptions o;
  o.presets["interactive"] =
      Preset::from_file(std::string(IIDM_SOURCE_DIR) + "/configs/presets/interactive.json").stages;
  o.presets["demo"] = Preset::from_file(kDemo + "preset.json").stages;
  o.default_preset = "interactive";
  o.max_queue = max_queue;
  return o;
}

// The server on its own thread, on a free port; stopped and joined at scope exit.
struct RunningServer {
  GenerationService service;
  EditorServer server;
  std::vector<std::string> log;
  std::mutex log_mutex;
  int port;
  std::thread thread;

  explicit RunningServer(ServiceOptions options)
      : service(demo_pipeline(), std::move(options)), server(service, http_options()), port(server.bind()) {
    thread = std::thread([this] { server.serve(); });
  }
  ~RunningServer() {
    server.stop();
    thread.join();
  }
  HttpOptions http_options() {
    HttpOptions o;
    o.port = 0;
    o.web_dir = std::string(IIDM_SOURCE_DIR) + "/web";
    o.examples_dir = kDemo + "examples";
    o.class_names = kLandscapeClasses;
    o.class_colors = kLandscapeClassColors;
    o.max_body_bytes = 4 << 20;
    o.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mutex);
      log.push_back(line);
    };
    return o;
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(120, 0);
    return c;
  }
};

httplib::MultipartFormDataItems form(const std::string& mask, const std::string& style,
                                     std::vector<std::pair<std::string, std::string>> fields = {}) {
  httplib::MultipartFormDataItems items;
  if (!mask.empty()) items.push_back({"mask", mask, "mask.png", "image/png"});
  if (!style.empty()) items.push_back({"style", style, "style.jpg", "image/jpeg"});
  for (auto& [name, value] : fields) items.push_back({name, value, "", ""});
  return items;
}

std::string example(const std::string& name) { return read_file(kDemo + "examples/" + name); }

// A grey PNG of class ids, as the page sends it.
std::string grey_png(const Tensor& labels) {
  test::TempDir dir;
  const Tensor grey = labels.to(torch::kFloat32).div(127.5).sub(1.0).unsqueeze(0).expand({3, -1, -1});
  write_image(dir.file("labels.png"), grey);
  return read_file(dir.file("labels.png"));
}

std::string error_of(const httplib::Result& r) {
  if (!r) return "no response";
  const Json body = Json::parse(r->body, nullptr, false);
  return body.is_object() && body.contains("error") ? body["error"].get<std::string>() : "(no JSON error) " + r->body;
}

TEST(Serve, AnswersItsRoutesWithTheLibrarysImage) {
  RunningServer s(demo_service());
  auto c = s.client();

  const auto health = c.Get("/api/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  const Json h = Json::parse(health->body);
  EXPECT_EQ(h["width"], 256);
  EXPECT_EQ(h["height"], 192);
  EXPECT_EQ(h["preset"], "interactive");
  EXPECT_EQ(h["presets"], Json::array({"demo", "interactive"}));

  const Json classes = Json::parse(c.Get("/api/classes")->body);
  ASSERT_EQ(classes["classes"].size(), 29u);
  EXPECT_EQ(classes["classes"][1]["name"], "sky");
  EXPECT_EQ(classes["classes"][1]["color"], "#6eaaeb");
  EXPECT_EQ(classes["ignore_label"], 255);

  const Json styles = Json::parse(c.Get("/api/styles")->body);
  ASSERT_EQ(styles["styles"].size(), 3u);
  const auto style = c.Get(styles["styles"][0]["url"].get<std::string>());
  ASSERT_TRUE(style);
  EXPECT_EQ(style->status, 200);
  EXPECT_EQ(style->body, example("reference-1.jpg"));
  const Json masks = Json::parse(c.Get("/api/masks")->body);
  ASSERT_EQ(masks["masks"].size(), 3u);

  const auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<html"), std::string::npos);

  // The label map as generate reads it, base64 in row order.
  const auto decoded = c.Post("/api/label-map", form(example("mask-1.png"), ""));
  ASSERT_TRUE(decoded);
  ASSERT_EQ(decoded->status, 200) << decoded->body;
  const Json map = Json::parse(decoded->body);
  EXPECT_EQ(map["width"], 256);
  EXPECT_EQ(map["height"], 192);
  EXPECT_EQ(map["labels"].get<std::string>().size(), 4u * ((256 * 192 + 2) / 3));

  // An image, and the very image the library makes for the same inputs and seed.
  const auto generated = c.Post(
      "/api/generate", form(example("mask-1.png"), example("reference-1.jpg"), {{"seed", "7"}, {"client", "page-1"}}));
  ASSERT_TRUE(generated);
  ASSERT_EQ(generated->status, 200) << generated->body;
  EXPECT_EQ(generated->get_header_value("Content-Type"), "image/png");
  EXPECT_EQ(generated->get_header_value("X-Seed"), "7");
  EXPECT_EQ(generated->get_header_value("X-Unet-Forwards"), "8");
  const Tensor image = decode_image(generated->body, "response");
  EXPECT_EQ(image.sizes(), torch::IntArrayRef({1, 3, 192, 256}));

  GenerationItem item;
  item.labels = read_label_map(kDemo + "examples/mask-1.png")[0];
  item.start = read_image(kDemo + "examples/reference-1.jpg", 256, 192)[0];
  item.seed = 7;
  Pipeline pipeline = demo_pipeline();
  // At the worker's thread count: a convolution's sums may be split differently at another one.
  configure_threads(s.service.options().threads);
  const GenerationResult direct = pipeline.generate({item}, s.service.options().presets.at("interactive"));
  EXPECT_EQ(generated->body, encode_png(direct.images[0])) << "the server must return the library's image";

  // Overrides: a step count on a strength preset, another preset, guidance.
  const auto two_steps = c.Post("/api/generate", form(example("mask-2.png"), example("reference-2.jpg"),
                                                      {{"steps", "2"}, {"preset", "demo"}, {"guidance", "2.5"}}));
  ASSERT_TRUE(two_steps);
  ASSERT_EQ(two_steps->status, 200) << two_steps->body;
  EXPECT_EQ(two_steps->get_header_value("X-Unet-Forwards"), "8") << "two rounds of two steps, guided";

  std::lock_guard<std::mutex> lock(s.log_mutex);
  ASSERT_FALSE(s.log.empty());
  EXPECT_NE(s.log.back().find("POST /api/generate 200"), std::string::npos) << s.log.back();
  EXPECT_NE(s.log.back().find(" ms"), std::string::npos) << s.log.back();
}

TEST(Serve, RefusesBadRequestsWithAMessageAndKeepsServing) {
  RunningServer s(demo_service());
  auto c = s.client();
  const std::string mask = example("mask-1.png"), style = example("reference-1.jpg");
  Tensor out_of_range = torch::full({192, 256}, 40, torch::kInt64);
  Tensor odd = torch::zeros({190, 250}, torch::kInt64);
  Tensor huge = torch::zeros({1040, 1040}, torch::kInt64);
  Tensor sparse = torch::full({192, 256}, 255, torch::kInt64);
  sparse.slice(0, 0, 96).fill_(1);  // sky on top, the rest unlabelled: a sparse layout is valid

  struct Case {
    std::string what;
    httplib::MultipartFormDataItems items;
    int status;
    std::string fragment;
  };
  const std::vector<Case> cases{
      {"no mask", form("", style), 400, "missing form field 'mask'"},
      {"no style", form(mask, ""), 400, "missing form field 'style'"},
      {"a mask that is no image", form("hello, world", style), 400, "mask: cannot decode"},
      {"a truncated PNG", form(mask.substr(0, mask.size() / 2), style), 400, "mask: cannot decode PNG"},
      {"a style that is no image", form(mask, "GIF89a..."), 400, "style: cannot decode"},
      {"a label out of range", form(grey_png(out_of_range), style), 400, "label value 40 outside 0..28"},
      {"a size the model cannot take", form(grey_png(odd), style), 400, "250x190 is not a multiple of 16"},
      {"a huge map", form(grey_png(huge), style), 413, "1040x1040 is larger than this server takes"},
      {"a bad seed", form(mask, style, {{"seed", "-3"}}), 400, "seed: '-3' is not a non-negative integer"},
      {"steps out of range", form(mask, style, {{"steps", "80"}}), 400, "steps: 80 is outside 1..50"},
      {"guidance that is no number", form(mask, style, {{"guidance", "lots"}}), 400, "guidance: 'lots'"},
      {"guidance out of range", form(mask, style, {{"guidance", "1e9"}}), 400, "guidance: 1000000000 is outside 0..20"},
      {"an unknown preset", form(mask, style, {{"preset", "nope"}}), 400, "unknown preset 'nope'"},
      {"an unknown field", form(mask, style, {{"sead", "1"}}), 400, "unknown form field 'sead'"},
  };
  for (const auto& k : cases) {
    const auto r = c.Post("/api/generate", k.items);
    ASSERT_TRUE(r) << k.what;
    EXPECT_EQ(r->status, k.status) << k.what << ": " << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << k.what;
    EXPECT_NE(error_of(r).find(k.fragment), std::string::npos) << k.what << ": " << error_of(r);
  }
  // Bodies that are not forms, a body over the limit, wrong methods and routes.
  auto status_and_error = [&](const httplib::Result& r, int status, const std::string& fragment,
                              const std::string& what) {
    ASSERT_TRUE(r) << what;
    EXPECT_EQ(r->status, status) << what << ": " << r->body;
    EXPECT_NE(error_of(r).find(fragment), std::string::npos) << what << ": " << error_of(r);
  };
  status_and_error(c.Post("/api/generate", "mask=1", "application/x-www-form-urlencoded"), 415,
                   "expected a multipart/form-data body", "a url-encoded body");
  status_and_error(c.Post("/api/generate", form(std::string(5 << 20, 'x'), style)), 413, "request body too large",
                   "a body over the limit");
  status_and_error(c.Get("/api/generate"), 405, "takes POST", "GET on generate");
  status_and_error(c.Get("/api/nothing"), 404, "no such page or API route", "an unknown route");
  status_and_error(c.Get("/api/styles/..%2Fmodel.json"), 404, "", "a path out of the examples");
  status_and_error(c.Post("/api/label-map", form(grey_png(out_of_range), "")), 400, "label value 40",
                   "an out-of-range map to the label reader");

  // Still serving, and a sparse (partly unlabelled) map is fine.
  const auto health = c.Get("/api/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  const auto ok = c.Post("/api/generate", form(grey_png(sparse), style, {{"seed", "1"}}));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

// Waits until the service's state satisfies `ready` (a few seconds at most).
template <typename F>
void wait_for(const GenerationService& service, F ready) {
  for (int i = 0; i < 2000 && !ready(service.status()); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(ready(service.status())) << "the service never reached the awaited state";
}

TEST(Serve, ANewerRequestOfAPageSupersedesItsQueuedOneAndTheQueueIsBounded) {
  RunningServer s(demo_service(/*max_queue=*/2));
  const std::string mask = example("mask-1.png"), style = example("reference-1.jpg");
  // The first request runs a longer preset so that the others queue behind it.
  auto post = [&](const std::string& client, const std::string& preset) {
    return std::async(std::launch::async, [&, client, preset] {
      auto c = s.client();
      auto r = c.Post("/api/generate", form(mask, style, {{"client", client}, {"preset", preset}}));
      return r ? std::make_pair(r->status, error_of(r)) : std::make_pair(0, std::string("no response"));
    });
  };
  auto running = post("page-r", "demo");
  wait_for(s.service, [](const ServiceStatus& st) { return st.busy; });
  auto older = post("page-a", "interactive");
  wait_for(s.service, [](const ServiceStatus& st) { return st.queued == 1; });
  auto other_page = post("page-b", "interactive");
  wait_for(s.service, [](const ServiceStatus& st) { return st.queued == 2; });
  auto newer = post("page-a", "interactive");  // takes the older one's place: still two waiting
  const auto superseded = older.get();
  EXPECT_EQ(superseded.first, 409) << superseded.second;
  EXPECT_NE(superseded.second.find("superseded"), std::string::npos) << superseded.second;
  wait_for(s.service, [](const ServiceStatus& st) { return st.queued == 2; });
  auto refused = post("page-c", "interactive");  // a third waiting request: over the bound
  const auto full = refused.get();
  EXPECT_EQ(full.first, 503) << full.second;
  EXPECT_NE(full.second.find("queue is full"), std::string::npos) << full.second;
  EXPECT_EQ(running.get().first, 200) << "other pages' requests do not interrupt a running one";
  EXPECT_EQ(other_page.get().first, 200) << "another page's request is not superseded";
  EXPECT_EQ(newer.get().first, 200);
}

TEST(Serve, ANewerRequestOfAPageAbandonsItsRunningOneAtTheNextStep) {
  RunningServer s(demo_service());
  const std::string mask = example("mask-1.png"), style = example("reference-1.jpg");
  auto post = [&](const std::string& preset) {
    return std::async(std::launch::async, [&, preset] {
      auto c = s.client();
      auto r = c.Post("/api/generate", form(mask, style, {{"client", "page-a"}, {"preset", preset}}));
      return r ? std::make_pair(r->status, error_of(r)) : std::make_pair(0, std::string("no response"));
    });
  };
  // The demo preset's 28 denoising steps take seconds; the newer one arrives while they run. Before
  // it existed, the running request answered 200 after all of them.
  auto running = post("demo");
  wait_for(s.service, [](const ServiceStatus& st) { return st.busy; });
  auto newer = post("interactive");
  const auto abandoned = running.get();
  EXPECT_EQ(abandoned.first, 409) << abandoned.second;
  EXPECT_NE(abandoned.second.find("abandoned after denoising step"), std::string::npos) << abandoned.second;
  EXPECT_EQ(newer.get().first, 200) << "the newer request is answered";
  EXPECT_EQ(s.service.status().served, 2);
}

}  // namespace
}  // namespace iidm
