#!/usr/bin/env bash
# The default ablation on the bundled demo models, end to end: held-out scenes from make-data, the
# weight average of the two demo U-Net checkpoints, `iidm ablate` over configs/ablation/demo.json
# (every variant scored: mask accuracy, mIoU, style similarity, FID/KID on the bundled
# segmenter's features, diversity, cost), then tools/ablation_report.py for the charts and the
# self-contained HTML report. Everything resumes: run it again after a kill.
# Usage: bash tools/ablate.sh [OUT=ablation] [extra iidm ablate flags...]
#   COUNT=12 (validation items)  VARIANTS=configs/ablation/demo.json
#   DIVERSITY_MAPS=3 (label maps sampled twice for the diversity column; 0: none, saves their runs)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-ablation}
shift || true
COUNT=${COUNT:-12}
VARIANTS=${VARIANTS:-configs/ablation/demo.json}
DIVERSITY_MAPS=${DIVERSITY_MAPS:-3}
IIDM=./build/iidm
[ -x "$IIDM" ] || bash tools/setup.sh
start=$SECONDS

# Validation scenes: a seed and an index range the demo models were not trained on.
[ -d "$OUT/data/labels" ] || $IIDM make-data --out "$OUT/data" --count "$COUNT" --first 200000 --size 256x192 --seed 3
[ -f "$OUT/unet-average.safetensors" ] ||
  $IIDM average models/demo/unet.safetensors models/demo/unet-b.safetensors --out "$OUT/unet-average.safetensors"

status=0
$IIDM ablate --variants "$VARIANTS" --data "$OUT/data" --out "$OUT" --count "$COUNT" \
  --model models/demo/model.json --unet models/demo/unet.safetensors --autoencoder models/demo/autoencoder.safetensors \
  --preset models/demo/preset.json --precision auto \
  --segmenter models/demo/segmenter.safetensors --segmenter-config models/demo/segmenter.json \
  --batch-size 4 --diversity-maps "$DIVERSITY_MAPS" --diversity-samples 2 "$@" || status=$?
/usr/bin/python3 tools/ablation_report.py "$OUT"
echo "ablation: $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s; table: $OUT/results.md, report: $OUT/report.html"
exit $status
