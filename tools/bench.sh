#!/usr/bin/env bash
# The standard benchmark set of [7/8] (docs/performance.md): prints the machine line, then every
# figure the targets are stated in, each measured in this run so that ratios compare like with like.
#   bash tools/bench.sh [--quick]        (--quick: one timed run per part instead of three)
# Set SDM_REPO to a checkout of WeilunWang/semantic-diffusion-model to time the official U-Net
# beside ours (tools/bench_official.py); without it that line is skipped.
# Takes about 25 minutes on 2 cores with native bf16, about an hour with fp32 only (AVX2).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/iidm ] || bash tools/setup.sh >&2
iidm=build/iidm
runs=3
[ "${1:-}" = "--quick" ] && runs=1
threads=${IIDM_THREADS:-$(nproc)}
demo=models/demo
demo_model=(--model $demo/model.json --unet $demo/unet.safetensors --autoencoder $demo/autoencoder.safetensors)
bench() { "$iidm" --threads "$threads" bench --runs "$runs" "$@"; }

echo "== machine"
bench --parts machine
native=$(grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo yes || echo no)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $threads threads, native bf16: $native, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"

echo "== conv peaks of this machine (3x3 320->320 at 64x64, NCHW and channels-last)"
bench --parts peak

if [ -n "${SDM_REPO:-}" ]; then
  echo "== the official SDM U-Net at IIDM's size (torch $( /usr/bin/python3 -c 'import torch; print(torch.__version__)'), default allocator)"
  modes=fp32
  [ "$native" = yes ] && modes=fp32,bf16_autocast,bf16_autocast_pair
  /usr/bin/python3 tools/bench_official.py "$SDM_REPO" --threads "$threads" --runs "$runs" --modes "$modes"
fi

# bf16 where the CPU computes it natively; elsewhere oneDNN has no bf16 kernels and torch falls back
# to reference loops (the peak line above shows how slow), so those parts are skipped.
precisions="fp32"
[ "$native" = yes ] && precisions="fp32 bf16"

echo "== IIDM-size parts (configs/models/iidm.json, random weights) at 512x384: the U-Net on 1x3x96x128 with SPADE computed / cached, the guidance pair, a step's time by operator, the VQ-f4 autoencoder, and presets estimated from these"
for p in $precisions; do
  bench --parts unet,pair,profile,encode,decode,preset --precision "$p" --preset iidm-fast,iidm-paper,fast
done
echo "== the same fp32 U-Net forward with glibc's default malloc settings (IIDM_MALLOC=system), for the allocator's share"
IIDM_MALLOC=system "$iidm" --threads "$threads" bench --runs "$runs" --parts unet --precision fp32
if [ "$native" = yes ]; then
  echo "== the bf16 U-Net forward with GroupNorm -> modulation -> SiLU as separate operators (IIDM_FUSED_NORM=0), for the fused pass's share"
  IIDM_FUSED_NORM=0 "$iidm" --threads "$threads" bench --runs "$runs" --parts unet --precision bf16
fi

echo "== end to end: one 512x384 image with the fast recipe (encode, sampling, decode), precision auto"
bench --parts generate,memory --preset iidm-fast

if [ "$native" = yes ]; then
  echo "== bf16 against fp32: the demo model at 512x384, same weights and seeds"
  bench --parts agreement "${demo_model[@]}" --size 512x384 --preset $demo/preset.json \
    --mask $demo/examples/mask-1.png --style $demo/examples/reference-1.jpg
else
  # Emulated bf16 runs the convolutions at the peak line's few GFLOP/s: a quarter of the pixels
  # keeps this part to minutes. Same recipe, weights and seeds, each precision in generate's format.
  echo "== bf16 against fp32: the demo model at 256x192 (bf16 is emulated on this CPU, see the peak line), same weights and seeds"
  "$iidm" --threads "$threads" bench --runs 1 --parts agreement "${demo_model[@]}" --size 256x192 \
    --preset $demo/preset.json --mask $demo/examples/mask-1.png --style $demo/examples/reference-1.jpg
fi

echo "== decoding 2048x2048 with IIDM's VQ-f4 decoder: tiled (512 px) in a process that holds only the autoencoder, and the untiled estimate"
"$iidm" --threads "$threads" bench --parts decode,memory --size 2048x2048 --tile 512 --runs 1
bench --parts memory --size 2048x2048

echo "== the README's main job (demo generate at 256x192, default flags), whole command"
out=$(mktemp -d)
for i in 1 2 3; do
  start=$(date +%s.%N)
  "$iidm" generate "${demo_model[@]}" --mask $demo/examples/mask-1.png --style $demo/examples/reference-1.jpg \
    --preset $demo/preset.json --out "$out/demo.png" > /dev/null 2>&1
  end=$(date +%s.%N)
  awk -v run="$i" -v a="$start" -v b="$end" 'BEGIN { printf "readme_main_job  run=%d  seconds=%.2f\n", run, b - a }'
done
rm -rf "$out"
