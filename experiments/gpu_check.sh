#!/usr/bin/env bash
# The GPU check of the speed work in one script (planned at about 6 minutes on one H100):
#   0. the CUDA-graph step's own tests (tests/test_graphed.py: replay trains exactly like eager);
#   1. python -m experiments.bench: the reference loop against the harness, eager and with
#      cuda_graph=true, plain and resnet at depths 20/56/110, then 1/2/4 concurrent jobs;
#   2. 2 epochs of plain-56 and resnet-56 on the eager and on the CUDA-graph path, same seed,
#      compared side by side (final errors, wall time, first step).
#
#   bash experiments/gpu_check.sh OUT DATA_ROOT      # DATA_ROOT holds cifar-10-batches-py/
#
# Writes OUT/graph_tests.log, OUT/bench.csv, OUT/bench.log, OUT/train.log, OUT/compare.csv and
# the two sweeps OUT/eager/ and OUT/graph/; OUT must be new or empty. STEPS, WARMUP, JOBS and
# EPOCHS override the sizes, PYTHON the interpreter (python3).
#
# On a machine with torch, Lightning, pandas and matplotlib but no Hydra and no network (the lent
# H100), prepare here, in the repo root (both folders are git-ignored through .git/info/exclude):
#   pip download --no-deps -d .whl hydra-core==1.3.8 omegaconf==2.3.1
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3      # published as a source archive
#   mkdir .devdata; cp ../shared/data/cifar10/{cifar10_train_0.npz,cifar10_test.npz,*.py} .devdata/
# then run there, carrying .whl and .devdata (about 41 MB):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site:$PWD/src:$PWD &&
#   python3 .devdata/materialize.py /tmp/cifar --train-parts 0 &&      # 17,000 training images
#   bash experiments/gpu_check.sh /tmp/check /tmp/cifar
set -euo pipefail
out=${1:?usage: gpu_check.sh OUT DATA_ROOT}
data=${2:?usage: gpu_check.sh OUT DATA_ROOT}
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
if [ -n "$(ls -A "$out" 2>/dev/null)" ]; then  # old sweeps would be skipped or mixed in
  echo "gpu_check.sh: $out is not empty; give a new folder" >&2
  exit 2
fi
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# Fail here, not halfway, if Hydra (carried as wheels) or the package is not importable.
$py -c "import torch, pytorch_lightning as pl, hydra, depthsweep
print('torch', torch.__version__, 'lightning', pl.__version__, 'hydra', hydra.__version__)"

# If the graphed step fails its tests, the rest measures the eager path alone.
paths=harness,harness-graph graphs="false true"
$py -m pytest -q -rs tests/test_graphed.py 2>&1 | tee "$out/graph_tests.log" ||
  { paths=harness graphs=false; }

bench() {
  $py -m experiments.bench --data-root "$data" --paths "$1" --jobs "${JOBS:-4}" \
    --steps "${STEPS:-100}" --warmup "${WARMUP:-20}" --out "$out/bench.csv" 2>&1 |
    tee -a "$out/bench.log"
}
# The graph tests do not go through Lightning and bf16: if the graphed path fails in the bench,
# measure the eager path alone rather than lose everything.
bench "$paths" || { echo "bench failed on $paths: eager alone" | tee -a "$out/bench.log"
  paths=harness graphs=false; bench harness; }

# 2 epochs of the training set at batch 128 (the ragged last batch is dropped).
iterations=$($py -c "
import sys
from depthsweep.data import read_cifar10
print(int(sys.argv[2]) * (len(read_cifar10(sys.argv[1], download=False).x_train) // 128))
" "$data" "${EPOCHS:-2}")
for graph in $graphs; do
  path=$([ "$graph" = true ] && echo graph || echo eager)
  $py -m experiments.run -m arch=plain,resnet depth=56 "cuda_graph=$graph" \
    "data.root=$data" data.download=false "schedule.iterations=$iterations" \
    trainer.enable_progress_bar=false "hydra.sweep.dir=$out/$path" 2>&1 | tee -a "$out/train.log"
done

$py - "$out" <<'EOF'
import sys
from pathlib import Path

import pandas as pd

out = Path(sys.argv[1])
cols = ["final_train_error", "final_test_error", "wall_time_s", "first_step_s", "status"]
paths = [p for p in ("eager", "graph") if (out / p / "summary.csv").is_file()]
if not paths:
    sys.exit("no summary.csv in eager/ or graph/: see train.log")
runs = {p: pd.read_csv(out / p / "summary.csv").set_index(["arch", "depth"])[cols] for p in paths}
table = pd.concat(runs, axis=1).swaplevel(axis=1).sort_index(axis=1, level=0, sort_remaining=False)
table.to_csv(out / "compare.csv")
with pd.option_context("display.width", 200, "display.max_columns", 20):
    print(f"{' vs '.join(paths)}:\n{table.round(2)}")
EOF
echo "tests/test_graphed.py: $(tail -n 1 "$out/graph_tests.log")"
