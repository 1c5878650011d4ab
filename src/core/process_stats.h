#pragma once
// What this process costs and where it runs, for cost columns and benchmark machine lines (Linux
// /proc; other systems report 0 / "unknown").
#include <string>

namespace iidm {

// Peak resident set size (VmHWM) in MiB.
double peak_rss_mib();
// Starts a new peak (writes 5 to /proc/self/clear_refs) so the next peak_rss_mib() covers only what
// follows; false when the kernel does not allow it (the peak then covers the whole process).
bool reset_peak_rss();
// The CPU model as /proc/cpuinfo names it, e.g. "AMD EPYC 9R14"; "unknown" when it cannot say.
std::string cpu_model_name();

}  // namespace iidm
