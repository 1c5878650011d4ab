#pragma once
// File-system helpers shared by every writer: outputs appear complete or not at all.
#include <cstdio>
#include <filesystem>
#include <string>

namespace iidm {

// Writes to `<path>.tmp.<pid>` and renames onto `path` on commit(); if destroyed without commit
// (an exception, an early return) the temporary file is removed, so no half file is left.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  // Flushes, fsyncs and renames; throws iidm::Error on any failure.
  void commit();

 private:
  std::string path_, temp_path_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

// Writes `bytes` to `path` atomically.
void write_file_atomic(const std::string& path, const std::string& bytes);
// Reads a whole file; throws iidm::Error naming the file if it cannot.
std::string read_file(const std::string& path);
// A .jpg/.jpeg/.png file (any case): what image folders are listed by.
bool is_image_file(const std::filesystem::path& path);

}  // namespace iidm
