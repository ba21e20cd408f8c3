#!/usr/bin/env bash
# Train, evaluate and export the default model on the GPU machine, from the repository root:
#   bash tools/train/device_run.sh --train-seconds 390      (the full run)
#   bash tools/train/device_run.sh --smoke --train-seconds 25
# Writes under $OUT: log.txt, curve.csv, metrics.json and the export packed as
# default-bf16.tgz.part-NN (15 MiB pieces; `cat default-bf16.tgz.part-* | tar xzf -` unpacks it).
set -o pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
OUT=${OUT:-/tmp/mtplx-out}
mkdir -p "$OUT"
WORK=/tmp/mtplx-train
EXPORT=/tmp/default-bf16
rm -rf "$WORK" "$EXPORT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/log.txt"
python3 -c 'import torch, transformers, tokenizers; print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__)' 2>&1 | tee -a "$OUT/log.txt"
python3 tools/train/train_default.py --work "$WORK" --export "$EXPORT" "$@" 2>&1 | tee -a "$OUT/log.txt"
rc=$?
cp "$WORK/curve.csv" "$WORK/metrics.json" "$OUT/" 2>/dev/null
if [ -f "$EXPORT/training_metrics.json" ]; then
  tar czf - -C "$(dirname "$EXPORT")" "$(basename "$EXPORT")" | split -b 15M -d - "$OUT/default-bf16.tgz.part-"
fi
ls -l "$OUT"
exit $rc
