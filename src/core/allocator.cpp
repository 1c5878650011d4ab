// The process-wide malloc settings every iidm program runs with. This file is linked into each
// executable as an object (CMakeLists.txt), not through the static library, so its initialiser
// always runs, before main(), in the CLI, the benchmarks and the tests alike.
//
// Why: glibc serves every block above its mmap threshold (128 KiB, adapting up to 32 MiB) with a
// fresh mmap and returns it to the kernel on free, and trims the heap top once 128 KiB+ is free.
// A U-Net forward allocates and frees hundreds of activations of 1–100 MiB, so each one is faulted
// in page by page again on every step: on the 2-core machines this took up to half the run time,
// most of it system time (docs/performance.md has the figures). Raising both thresholds keeps freed
// blocks in the heap for reuse. The peak footprint is unchanged; the heap simply is not shrunk
// below it until the process exits.
//
// LibTorch's CPU tensors are allocated with posix_memalign (64-byte alignment). glibc before 2.38
// does not reuse freed chunks for aligned requests well (its bug 14581): with thresholds this high a
// tiled decode's heap grew by ~0.4 GiB per tile while live memory stayed at 2.3 GiB (heaptrack), and
// a 1024x1024 tiled decode was OOM-killed at 24 GiB. So tensors get an allocator of ours that takes
// plain malloc blocks and aligns inside them, which glibc reuses as any other block.
//
// IIDM_MALLOC=system keeps glibc's defaults and LibTorch's allocator (to measure the difference);
// anything else is refused.
#include <c10/core/CPUAllocator.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace iidm {
namespace {

// 64-byte aligned blocks carved from malloc: the block's own address is stored just before the
// aligned pointer, so the data pointer is also the context (LibTorch's raw_allocate, which oneDNN
// uses, requires that) and one deleter frees both kinds.
class AlignedMallocAllocator final : public c10::Allocator {
 public:
  static constexpr size_t kAlignment = 64;  // c10's gAlignment: AVX-512 loads
  c10::DataPtr allocate(size_t bytes) const override {
    void* data = nullptr;
    if (bytes > 0) {
      void* block = std::malloc(bytes + kAlignment + sizeof(void*));
      TORCH_CHECK(block, "DefaultCPUAllocator: not enough memory: you tried to allocate ", bytes, " bytes.");
      const auto first = reinterpret_cast<std::uintptr_t>(block) + sizeof(void*);
      data = reinterpret_cast<void*>((first + kAlignment - 1) & ~(std::uintptr_t{kAlignment} - 1));
      static_cast<void**>(data)[-1] = block;
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }

 private:
  static void release(void* data) {
    if (data) std::free(static_cast<void**>(data)[-1]);
  }
};

bool configure_allocator() {
  const char* mode = std::getenv("IIDM_MALLOC");
  if (mode && std::strcmp(mode, "system") == 0) return false;
  if (mode && *mode && std::strcmp(mode, "tuned") != 0) {
    std::fprintf(stderr, "iidm: IIDM_MALLOC='%s' is not 'tuned' (the default) or 'system'\n", mode);
    std::exit(2);
  }
#if defined(__GLIBC__)
  // glibc >= 2.35 accepts any threshold (older ones cap it at 32 MiB and return 0: still better).
  constexpr int kNever = 0x7fffffff;  // 2 GiB - 1: larger blocks are rare and costly either way
  mallopt(M_MMAP_THRESHOLD, kNever);
  mallopt(M_TRIM_THRESHOLD, kNever);
  // One arena: the worker threads' arenas are mmap'd heaps of at most 64 MiB that cannot keep
  // larger blocks; with two to a few cores the shared arena's lock costs nothing measurable.
  mallopt(M_ARENA_MAX, 1);
  static AlignedMallocAllocator allocator;
  c10::SetCPUAllocator(&allocator, /*priority=*/1);  // above LibTorch's default (0)
  return true;
#else
  return false;
#endif
}

[[maybe_unused]] const bool allocator_configured = configure_allocator();

}  // namespace
}  // namespace iidm
