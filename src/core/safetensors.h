#pragma once
// safetensors: 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {str: str}}, then raw data.
// The reader memory-maps the file and validates the whole header before anything is used, so a
// truncated or corrupted weight file fails with the file name and the offending key.
#include <torch/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace iidm {

struct TensorEntry {
  std::string name;
  std::string dtype;  // safetensors spelling: F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte span inside the data section
};

class SafeTensorsFile {
 public:
  // Maps and validates `path`; throws iidm::Error naming the file and the problem.
  static SafeTensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  // Tensor names in file order (header order).
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  const TensorEntry& entry(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The tensor on CPU. It aliases the mapping when the data is aligned for its dtype (the mapping
  // stays alive as long as the tensor does) and is a copy otherwise. Treat it as read-only.
  torch::Tensor tensor(const std::string& name) const;

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> mapping_;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::vector<std::string> names_;
  std::map<std::string, TensorEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (any device; copied to CPU, made contiguous) in the given order. The file is
// written to `path.tmp` and renamed, so a failure never leaves a half-written file behind.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The safetensors name of a torch dtype; throws for types the project does not handle.
std::string safetensors_dtype_name(torch::ScalarType type);

}  // namespace iidm
