// safetensors reader/writer: round trips, and every kind of damaged file is refused with the file
// name and the problem (a fuzz pass over truncations and byte corruptions must never crash).
#include <torch/torch.h>

#include <fstream>

#include "core/fs.h"
#include "core/safetensors.h"
#include "test_util.h"

namespace iidm {
namespace {

std::string read_bytes(const std::string& path) { return read_file(path); }
void write_bytes(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

// A raw file from a header string and a data section.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

TEST(SafeTensors, RoundTripsEveryDtype) {
  test::TempDir dir;
  const std::string path = dir.file("all.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> tensors{
      {"f32", torch::randn({3, 4})},
      {"f64", torch::randn({5}, torch::kFloat64)},
      {"f16", torch::randn({2, 2}).to(torch::kFloat16)},
      {"bf16", torch::randn({7}).to(torch::kBFloat16)},
      {"i64", torch::arange(10, torch::kInt64)},
      {"i32", torch::arange(3, torch::kInt32)},
      {"u8", torch::randint(0, 255, {4, 4}, torch::kUInt8)},
      {"scalar", torch::tensor(3.5f)},
      {"empty", torch::zeros({0, 3})},
      {"noncontig", torch::randn({4, 6}).t()},
  };
  save_safetensors(path, tensors, {{"format", "pt"}});
  auto file = SafeTensorsFile::open(path);
  ASSERT_EQ(file.names().size(), tensors.size());
  EXPECT_EQ(file.metadata().at("format"), "pt");
  for (const auto& [name, t] : tensors) {
    torch::Tensor back = file.tensor(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(back, t.contiguous())) << name;
  }
  // No temporary file is left beside the output.
  int files = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(SafeTensors, TensorOutlivesFileObject) {
  test::TempDir dir;
  save_safetensors(dir.file("a.safetensors"), {{"w", torch::arange(16, torch::kFloat32)}});
  torch::Tensor t;
  {
    auto file = SafeTensorsFile::open(dir.file("a.safetensors"));
    t = file.tensor("w");
  }
  EXPECT_FLOAT_EQ(t[15].item<float>(), 15.f);
}

TEST(SafeTensors, FailedWriteLeavesNothing) {
  test::TempDir dir;
  // A bool-incompatible dtype (complex) cannot be stored: the writer must throw and leave no file.
  EXPECT_THROW(save_safetensors(dir.file("x.safetensors"), {{"c", torch::randn({2}, torch::kComplexFloat)}}), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  // Duplicate names are refused before anything is written.
  EXPECT_THROW(save_safetensors(dir.file("y.safetensors"), {{"a", torch::ones(1)}, {"a", torch::ones(1)}}), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(SafeTensors, RejectsEachKindOfBadHeader) {
  test::TempDir dir;
  const std::string data(16, '\0');
  struct Case {
    std::string header, data, expect;
  };
  const std::vector<Case> cases{
      {"{not json", data, "invalid JSON"},
      {"[1,2]", data, "not a JSON object"},
      {R"({"w":{"dtype":"F32","shape":[2]}})", data, "no 'data_offsets'"},
      {R"({"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", data, "unsupported dtype 'Q7'"},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data, "negative"},
      {R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data, "does not match shape"},
      {R"({"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", data, "outside"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data, "end before begin"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       data, "overlaps"},
      {R"({"__metadata__":{"k":1}})", data, "not a string"},
      {R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", data, "shape is not an array"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = dir.file("bad" + std::to_string(i) + ".safetensors");
    write_bytes(path, raw_file(cases[i].header, cases[i].data));
    test::expect_error([&] { SafeTensorsFile::open(path); }, {path, cases[i].expect});
  }
  // Too short for the length prefix; a length larger than the file; a missing file.
  write_bytes(dir.file("short"), "abc");
  test::expect_error([&] { SafeTensorsFile::open(dir.file("short")); }, {dir.file("short"), "shorter than"});
  write_bytes(dir.file("long"), raw_file("{}", "").substr(0, 8) + "{}");
  std::string huge = raw_file(R"({"a":1})", "");
  huge[0] = '\xff';
  huge[1] = '\xff';
  write_bytes(dir.file("huge"), huge);
  test::expect_error([&] { SafeTensorsFile::open(dir.file("huge")); }, {dir.file("huge"), "header length"});
  test::expect_error([&] { SafeTensorsFile::open(dir.file("missing")); }, {dir.file("missing"), "cannot open"});
}

TEST(SafeTensors, FuzzTruncationsAndCorruptionsNeverCrash) {
  test::TempDir dir;
  const std::string good = dir.file("good.safetensors");
  save_safetensors(good,
                   {{"a.weight", torch::randn({8, 4})}, {"a.bias", torch::randn({8})}, {"step", torch::tensor(7)}});
  const std::string bytes = read_bytes(good);
  const std::string path = dir.file("fuzz.safetensors");
  int refused = 0, opened = 0;
  // Every truncation point: all must be refused (the data section is exactly covered).
  for (size_t len = 0; len < bytes.size(); ++len) {
    write_bytes(path, bytes.substr(0, len));
    try {
      SafeTensorsFile::open(path);
      ++opened;
    } catch (const Error& e) {
      ++refused;
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    }
  }
  EXPECT_EQ(opened, 0) << "a truncated file was accepted";
  // Random byte corruptions in the header: either refused with a clear error, or (when the damage
  // happens to keep the header valid, e.g. inside a name) opened with every tensor readable.
  std::mt19937 rng(1234);
  const size_t header_end =
      8 + static_cast<size_t>(static_cast<uint8_t>(bytes[0]) | (static_cast<uint8_t>(bytes[1]) << 8));
  for (int trial = 0; trial < 400; ++trial) {
    std::string damaged = bytes;
    const int flips = 1 + trial % 3;
    for (int f = 0; f < flips; ++f) damaged[rng() % header_end] = static_cast<char>(rng() & 0xff);
    write_bytes(path, damaged);
    try {
      auto file = SafeTensorsFile::open(path);
      for (const auto& name : file.names()) (void)file.tensor(name).sum();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace iidm
