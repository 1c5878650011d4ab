#include "core/seed.h"

namespace iidm {

uint64_t derive_seed(uint64_t seed, const std::string& name) {
  // FNV-1a over the name, mixed with the seed by splitmix64: stable across platforms and runs.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  uint64_t z = seed + 0x9e3779b97f4a7c15ull + h;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace iidm
