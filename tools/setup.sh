#!/usr/bin/env bash
# Installs what is missing on Debian 12 (as root, or with sudo), then configures and builds into
# build/. Idempotent: with everything installed and built it only re-checks (a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ make cmake ninja-build
  libtorch-dev            # LibTorch 1.13 (CPU) with CMake config
  libopenblas0-openmp     # without it libtorch's matmuls run on reference BLAS (~10x slower)
  libopencv-dev
  libpng-dev              # label maps: palette PNGs read as their indices
  libeigen3-dev libfmt-dev libcli11-dev nlohmann-json3-dev libgtest-dev
  libgloo-dev             # headers of the Gloo backend of c10d (multi-process training)
  python3-torch python3-numpy  # tools/ (checkpoint conversion, TorchScript export) and their tests
  python3-matplotlib      # tools/ablation_report.py: the charts of an ablation
  pkgconf libcpp-httplib-dev  # `iidm serve`: cpp-httplib (a shared library found by pkg-config)
  chromium                # tests/web: the editor page in a real headless browser
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js drives the browser test (playwright-core). Any node >= 18 with npm will do, Debian's or
# another vendor's (whose nodejs package bundles npm and conflicts with Debian's npm package).
command -v node > /dev/null && command -v npm > /dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The browser test's one npm package, pinned by tests/web/package-lock.json.
if [ ! -d tests/web/node_modules/playwright-core ]; then
  npm ci --prefix tests/web --no-audit --no-fund
fi

jobs=$(nproc 2>/dev/null || echo 2)
if [ ! -f build/CMakeCache.txt ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build build -j"$jobs"
