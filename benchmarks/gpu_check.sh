#!/usr/bin/env bash
# One prepared GPU check (under 8 minutes on one H100/H200). Every figure line starts with
# the card's name. Run from the repository root:
#
#     bash benchmarks/gpu_check.sh                # on a GPU machine
#     DRY_RUN=1 bash benchmarks/gpu_check.sh      # tiny sizes on a CPU: checks it runs
#
# 1. CplMixVAE on the paper's Smart-seq shape (22,365 x 5,032 simulated, K=115, |s|=2,
#    2 arms, batch 1000): warm-up + training with the default number of epochs, annotate,
#    then prune() to the end (target: < 5 min); the same data with scVI (10 latent dims,
#    its default epochs, batch 1000); ratios.
# 2. One full epoch of 1,000,000 cells x 2,000 genes (5% non-zero, CSR on the device,
#    batch 1024) (target: < 30 s), with the sparse-aware start PCA timed.
# Results are also appended as JSON lines to $OUT/gpu_check.jsonl (or ./gpu_check.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
JSON="${OUT:-.}/gpu_check.jsonl"
CARD=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU')")
echo "card: $CARD"
"$PY" -c "import torch, scvi, lightning; print('torch', torch.__version__, 'scvi', scvi.__version__, 'lightning', lightning.__version__)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
start=$SECONDS
if [[ "${DRY_RUN:-0}" != "0" ]]; then
  "$PY" benchmarks/speed.py --quick --datasets smartseq --prune --eval-every 2 --json "$JSON"
  "$PY" benchmarks/scale.py --cells 3000 --genes 300 --k 5 --batch-size 256 --steps 0
else
  # default epochs (about 1,200 steps: 52 epochs of 23 steps at batch 1000) + pruning
  timeout 330 "$PY" benchmarks/speed.py --datasets smartseq --smartseq-epochs 0 --prune \
    --eval-every 10 --json "$JSON" || echo "[$CARD] smartseq: timed out or failed (exit $?)"
  timeout 120 "$PY" benchmarks/scale.py --cells 1000000 --steps 0 \
    || echo "[$CARD] 1M cells: timed out or failed (exit $?)"
fi
echo "[$CARD] gpu_check.sh total $((SECONDS - start)) s"
