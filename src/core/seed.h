#pragma once
// Seeds derived from a run seed and a name, shared by generation (one seed per image) and the
// trainers (one per step), so any subset of a run (a shard, a resumed run) draws the same numbers.
#include <cstdint>
#include <string>

namespace iidm {

// A per-item seed from the run seed and the item's name: stable across platforms and runs.
uint64_t derive_seed(uint64_t seed, const std::string& name);

}  // namespace iidm
