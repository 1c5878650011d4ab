#pragma once
// What this process costs and where it runs, for cost columns and benchmark machine lines (Linux
// /proc; other systems report 0 / "unknown").
#include <cstdint>
#include <string>

namespace iidm {

// Peak resident set size (VmHWM) in MiB.
double peak_rss_mib();
// Starts a new peak (writes 5 to /proc/self/clear_refs) so the next peak_rss_mib() covers only what
// follows; false when the kernel does not allow it (the peak then covers the whole process).
bool reset_peak_rss();
// The CPU model as /proc/cpuinfo names it, e.g. "AMD EPYC 9R14"; "unknown" when it cannot say.
std::string cpu_model_name();
// Whether the CPU flags (/proc/cpuinfo) include `flag`, e.g. "avx512_bf16" or "amx_bf16".
bool cpu_has_flag(const std::string& flag);
// The memory a new allocation can have without swapping: MemAvailable in bytes (0 when unknown).
int64_t available_memory_bytes();
// Memory this process's malloc holds free for reuse (glibc keeps freed blocks: core/allocator.cpp),
// which a new allocation gets before asking the kernel; 0 when unknown.
int64_t allocator_free_bytes();

}  // namespace iidm
