#!/usr/bin/env bash
# Reproduces the bundled demo models (models/demo/) from scratch on a 2-core CPU machine:
#   1. make-data: 800 procedural landscapes for training, 50 held-out scenes for evaluation;
#   2. train-autoencoder: the small KL first stage (bf16), which also measures the latent scale;
#   3. train-unet: the 29-class SPADE U-Net on the encoded training set (bf16, latent crops),
#      while train-segmenter trains the segmentation network on the other core;
#      then continues the U-Net's run for a second checkpoint (unet-b, for the ensemble ablation);
#   4. distill: the editor's few-step student (a ddim8 teacher at guidance 3 -> a ddim4 student);
#   5. evaluate: mask accuracy and reference colour correlation on the 50 held-out masks.
# Every step resumes where it stopped when the script is run again (checkpoints in WORK).
# Usage: bash tools/train_demo.sh [WORK=demo-work] [OUT=models/demo]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-demo-work}
OUT=${2:-models/demo}
IIDM=./build/iidm
[ -x "$IIDM" ] || { echo "build first: bash tools/setup.sh" >&2; exit 1; }
mkdir -p "$WORK" "$OUT"
start=$SECONDS
stamp() { echo "[$(date +%H:%M:%S), $(((SECONDS - start) / 60)) min] $*"; }

# Each trainer gets one thread: two processes then share the 2 cores without OpenMP threads
# waiting on each other, which costs far more than it gains.
T="--threads 1"

stamp "data"
$IIDM make-data --out "$WORK/train" --count 800 --size 256x192 --seed 1
$IIDM make-data --out "$WORK/heldout" --count 50 --first 100000 --size 256x192 --seed 2

stamp "segmenter (background)"
$IIDM $T train-segmenter --model configs/demo/segmenter.json --data "$WORK/train" --validation "$WORK/heldout" \
  --size 256x192 --crop 128 --batch-size 8 --steps ${SEG_STEPS:-1500} --lr 2e-3 --bf16 --log-every 100 --out "$WORK/segmenter" \
  > "$WORK/segmenter.log" 2>&1 &
seg_pid=$!

stamp "autoencoder"
$IIDM $T train-autoencoder --model configs/demo/autoencoder.json --data "$WORK/train" --size 256x192 --crop 96 \
  --batch-size 8 --steps 800 --lr 4e-4 --bf16 --log-every 100 --sample-every 200 --out "$WORK/ae"
cp "$WORK/ae/autoencoder.safetensors" "$WORK/ae/autoencoder.json" "$OUT/"
cp configs/demo/model.json configs/demo/preset.json "$OUT/"

stamp "U-Net"
$IIDM $T train-unet --model "$OUT/model.json" --data "$WORK/train" --autoencoder "$OUT/autoencoder.safetensors" \
  --size 256x192 --cache "$WORK/latents.safetensors" --crop 32 --batch-size 8 --steps ${UNET_STEPS:-3000} --lr 5e-4 \
  --ema-decay 0.999 --bf16 --sparse-prob 0.1 --log-every 100 --save-every 250 --sample-every 500 \
  --export-precision fp16 --out "$WORK/unet"
cp "$WORK/unet/unet-ema.safetensors" "$OUT/unet.safetensors"

# A second checkpoint of the same run for the ensemble rows of the ablation (IIDM averaged its
# 176k and 266k checkpoints): the run continued from its EMA weights for UNET_B_STEPS more steps
# (the optimiser restarts: the EMA weights are what is bundled).
stamp "U-Net, second checkpoint"
$IIDM $T train-unet --model "$OUT/model.json" --data "$WORK/train" --autoencoder "$OUT/autoencoder.safetensors" \
  --size 256x192 --cache "$WORK/latents.safetensors" --crop 32 --batch-size 8 --steps ${UNET_B_STEPS:-400} --lr 2e-4 \
  --ema-decay 0.999 --bf16 --sparse-prob 0.1 --log-every 100 --save-every 200 --init "$OUT/unet.safetensors" \
  --seed 2 --export-precision fp16 --out "$WORK/unet-b"
cp "$WORK/unet-b/unet-ema.safetensors" "$OUT/unet-b.safetensors"

# The editor's student (`iidm serve`): one round of progressive distillation, the ddim8 teacher with
# guidance 3 folded in -> a 4-step student sampled with guidance 1 (models/demo/preset-student.json).
# ddim8 -> ddim4 is the only halving near 4 steps whose student chain is every other teacher step
# on a 1000-step schedule (ddim16 -> ddim8 is not: strides 63 and 125).
stamp "distillation (student for the editor)"
$IIDM $T distill --model "$OUT/model.json" --teacher "$OUT/unet.safetensors" --cache "$WORK/latents.safetensors" \
  --teacher-steps 8 --rounds 1 --guidance 3 --iterations ${DISTILL_STEPS:-150} --batch-size 4 --lr 1e-4 \
  --save-every 25 --out "$WORK/distill"
cp "$WORK/distill/student-ddim4.safetensors" "$OUT/student.safetensors"
cp configs/demo/preset-student.json "$OUT/"

stamp "waiting for the segmenter"
wait $seg_pid || { cat "$WORK/segmenter.log" >&2; exit 1; }
tail -n 2 "$WORK/segmenter.log"
cp "$WORK/segmenter/segmenter.safetensors" "$OUT/"
cp configs/demo/segmenter.json "$OUT/segmenter.json"

stamp "evaluation on 50 held-out masks"
$IIDM evaluate --model "$OUT/model.json" --unet "$OUT/unet.safetensors" --autoencoder "$OUT/autoencoder.safetensors" \
  --segmenter "$OUT/segmenter.safetensors" --segmenter-config "$OUT/segmenter.json" --data "$WORK/heldout" --count 50 \
  --preset "$OUT/preset.json" --precision bf16 --channels-last --batch-size 5 --out "$WORK/eval"
stamp "done"
