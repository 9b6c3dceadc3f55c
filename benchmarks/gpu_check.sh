#!/usr/bin/env bash
# One prepared GPU check (under 8 minutes on one H100/H200). Every figure line starts with
# the card's name. Run from the repository root:
#
#     bash benchmarks/gpu_check.sh                # on a GPU machine
#     DRY_RUN=1 bash benchmarks/gpu_check.sh      # tiny sizes on a CPU: checks it runs
#
# 1. CplMixVAE on the paper's Smart-seq shape (22,365 x 5,032 simulated, K=115) as users run
#    it: CplMixVAE(adata, n_categories=115).train() with every default (batch 256, default
#    epochs; K = 115 resolves to the many-types setting of cplmix_sc/model/_defaults.py: the
#    divisive start, a warm-up of 10 steps per category, detached coupling, start_weight=10;
#    annotate), then prune() to the end.
# 2. The same data, CplMixVAE and scVI (10 latent dims) side by side at batch 1000 for 3
#    epochs each: the marginal epoch (median of the epochs after the first) and the ratio.
# 3. The default path on 1,000,000 cells x 2,000 genes (scale.py --default-path: the start
#    on 20,000 sampled cells, one warm-up epoch, one mixture epoch, annotate; K = 50).
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
  "$PY" benchmarks/speed.py --quick --datasets smartseq --models cplmix --smartseq-epochs 0 \
    --smartseq-batch 0 --prune --eval-every 2 --json "$JSON"
  "$PY" benchmarks/speed.py --quick --datasets smartseq --smartseq-epochs 3 --eval-every 0 \
    --json "$JSON"
  "$PY" benchmarks/scale.py --cells 3000 --genes 300 --k 5 --default-path
else
  timeout 210 "$PY" benchmarks/speed.py --datasets smartseq --models cplmix --smartseq-epochs 0 \
    --smartseq-batch 0 --prune --eval-every 10 --json "$JSON" \
    || echo "[$CARD] smartseq defaults: timed out or failed (exit $?)"
  timeout 90 "$PY" benchmarks/speed.py --datasets smartseq --smartseq-epochs 3 --eval-every 0 \
    --json "$JSON" || echo "[$CARD] smartseq per epoch: timed out or failed (exit $?)"
  timeout 170 "$PY" benchmarks/scale.py --cells 1000000 --default-path \
    || echo "[$CARD] 1M cells default path: timed out or failed (exit $?)"
fi
echo "[$CARD] gpu_check.sh total $((SECONDS - start)) s"
