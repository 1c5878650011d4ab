#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"

namespace iidm {
namespace {

struct DTypeInfo {
  const char* name;
  torch::ScalarType type;
  size_t size;
};

// The dtypes a checkpoint of these models can hold. FP8 and unsigned 16/32/64 have no LibTorch
// 1.13 equivalent and are reported as unsupported rather than misread.
constexpr DTypeInfo kDTypes[] = {
    {"F64", torch::kFloat64, 8},   {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2},
    {"BF16", torch::kBFloat16, 2}, {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},
    {"I16", torch::kInt16, 2},     {"I8", torch::kInt8, 1},     {"U8", torch::kUInt8, 1},
    {"BOOL", torch::kBool, 1},
};

const DTypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

// A header larger than this is not a weight file (the biggest real ones are a few MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

}  // namespace

std::string safetensors_dtype_name(torch::ScalarType type) {
  for (const auto& d : kDTypes)
    if (d.type == type) return d.name;
  fail("dtype {} cannot be stored in safetensors", c10::toString(type));
}

struct SafeTensorsFile::Mapping {
  void* address = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (address && size) munmap(address, size);
  }
};

SafeTensorsFile SafeTensorsFile::open(const std::string& path) {
  SafeTensorsFile file;
  file.path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open weight file: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail("{}: not a safetensors file: {} bytes, shorter than the 8-byte header length", path, file_size);
  }
  file.mapping_ = std::make_shared<Mapping>();
  void* address = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (address == MAP_FAILED) fail("{}: cannot map file: {}", path, std::strerror(errno));
  file.mapping_->address = address;
  file.mapping_->size = file_size;
  const auto* bytes = static_cast<const uint8_t*>(address);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];  // little-endian
  if (header_len == 0 || header_len > kMaxHeaderBytes || header_len > file_size - 8)
    fail(
        "{}: corrupt or truncated safetensors file: header length {} does not fit in the {} "
        "bytes of the file",
        path, header_len, file_size);
  const uint64_t data_size = file_size - 8 - header_len;
  file.data_ = bytes + 8 + header_len;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: corrupt safetensors header (invalid JSON): {}", path, e.what());
  }
  if (!header.is_object()) fail("{}: corrupt safetensors header: not a JSON object", path);

  std::vector<const TensorEntry*> by_offset;
  for (const auto& item : header.items()) {
    const std::string& name = item.key();
    const auto& value = item.value();
    if (name == "__metadata__") {
      if (!value.is_object()) fail("{}: __metadata__ is not an object", path);
      for (const auto& m : value.items()) {
        if (!m.value().is_string()) fail("{}: __metadata__ entry '{}' is not a string", path, m.key());
        file.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& why) { fail("{}: tensor '{}': {}", path, name, why); };
    if (!value.is_object()) bad("header entry is not an object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) bad(fmt::format("header entry has no '{}'", field));
    if (!value["dtype"].is_string()) bad("dtype is not a string");
    TensorEntry entry;
    entry.name = name;
    entry.dtype = value["dtype"].get<std::string>();
    const DTypeInfo* dtype = find_dtype(entry.dtype);
    if (!dtype) bad(fmt::format("unsupported dtype '{}'", entry.dtype));
    const auto& shape = value["shape"];
    if (!shape.is_array()) bad("shape is not an array");
    uint64_t numel = 1;
    for (const auto& s : shape) {
      if (!s.is_number_unsigned()) bad("shape has a negative or non-integer dimension");
      const uint64_t dim = s.get<uint64_t>();
      if (dim > (1ull << 40) || (dim && numel > (1ull << 50) / dim)) bad("shape is implausibly large");
      numel *= dim;
      entry.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& offsets = value["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      bad("data_offsets is not a pair of non-negative integers");
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    if (entry.end < entry.begin) bad(fmt::format("data_offsets [{}, {}] end before begin", entry.begin, entry.end));
    if (entry.end - entry.begin != numel * dtype->size)
      bad(fmt::format("byte span {} does not match shape x dtype size = {} x {} = {}", entry.end - entry.begin, numel,
                      dtype->size, numel * dtype->size));
    if (entry.end > data_size)
      bad(fmt::format("data [{}, {}] lies outside the {}-byte data section (file truncated?)", entry.begin, entry.end,
                      data_size));
    file.names_.push_back(name);
    file.entries_[name] = std::move(entry);
  }
  for (const auto& name : file.names_) by_offset.push_back(&file.entries_[name]);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorEntry* a, const TensorEntry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorEntry* prev = by_offset[i - 1];
    const TensorEntry* cur = by_offset[i];
    if (cur->begin < prev->end && cur->end > cur->begin && prev->end > prev->begin)
      fail("{}: tensor '{}' [{}, {}] overlaps tensor '{}' [{}, {}]", path, cur->name, cur->begin, cur->end, prev->name,
           prev->begin, prev->end);
  }
  return file;
}

const TensorEntry& SafeTensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) fail("{}: no tensor named '{}'", path_, name);
  return it->second;
}

torch::Tensor SafeTensorsFile::tensor(const std::string& name) const {
  const TensorEntry& e = entry(name);
  const DTypeInfo* dtype = find_dtype(e.dtype);
  const uint8_t* ptr = data_ + e.begin;
  const auto options = torch::TensorOptions().dtype(dtype->type);
  if (reinterpret_cast<uintptr_t>(ptr) % dtype->size == 0) {
    auto keep_alive = mapping_;
    return torch::from_blob(
        const_cast<uint8_t*>(ptr), e.shape, [keep_alive](void*) mutable { keep_alive.reset(); }, options);
  }
  torch::Tensor copy = torch::empty(e.shape, options);
  std::memcpy(copy.data_ptr(), ptr, e.end - e.begin);
  return copy;
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> cpu;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__" || header.contains(name)) fail("{}: duplicate or reserved tensor name '{}'", path, name);
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = t.numel() * t.element_size();
    header[name] = {{"dtype", safetensors_dtype_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(t);
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (the reader can then alias it).
  while ((8 + text.size()) % 8) text.push_back(' ');
  AtomicFile out(path);
  uint64_t len = text.size();
  char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  out.write(len_bytes, 8);
  out.write(text.data(), text.size());
  for (const auto& t : cpu) out.write(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  out.commit();
}

}  // namespace iidm
