#!/usr/bin/env bash
# Everything that needs the GPU, in one prepared call of at most 9 minutes:
#   a. tests/test_graphed.py: replayed CUDA-graph steps, and whole graphed runs (fp32, bf16),
#      against eager ones; a graph variant that fails is left out of what follows;
#   b. experiments.bench: the reference loop against eager/graph x fp32/bf16, resnet at depths 20
#      and 110, then 1, 2 and 4 concurrent processes of the fastest variant at 110, without and
#      (if the image has nvidia-cuda-mps-control) with MPS;
#   c. a quick Figure 6 on real CIFAR-10 (experiment=figure6_quick): the fastest variant that
#      passed its tests, the jobs at once that pay (under MPS where it was measured), and the
#      iterations that fit what time is left (experiments.quick_plan, from b's CSVs).
# Each step is guarded (a failure is logged and the next step runs) and timed against a deadline.
# Whatever happens, OUT ends up holding gpu_check.tar.gz (every log, CSV, summary and figure; no
# checkpoints) and, beside it, gpu_check.log, versions.txt, bench.csv, summary.md, figure6.png and
# error_vs_depth.png. On a GPU it ran in 392 s (results/gpu).
#
#   bash experiments/gpu_check.sh OUT DATA_ROOT    # DATA_ROOT holds cifar-10-batches-py/
#
# Sizes (environment): DEADLINE_S 510 (steps a-d end by then), FIGURE_BUDGET_S 240 (c's cap),
# DEPTHS 20,110, STEPS 100, WARMUP 20, JOBS 4; PYTHON (python3). The CPU dry run shrinks them and
# adds QUICK_PLAN_ARGS (options of experiments.quick_plan) and FIGURE_OVERRIDES (Hydra overrides
# of the figure's sweep).
#
# On the lent GPU machine (torch, Lightning, pandas, matplotlib, pytest; no Hydra, no network),
# prepare here, in the repo root (.whl and .devdata are git-ignored through .git/info/exclude):
#   mkdir -p .whl .devdata && cp ../shared/device-wheels/*.whl .whl/
#   cp ../shared/data/cifar10/{cifar10_train_0.npz,cifar10_test.npz,verify.py,materialize.py} .devdata/
# then run there, carrying .whl and .devdata (about 41 MB):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site:$PWD/src:$PWD &&
#   python3 .devdata/materialize.py /tmp/cifar --train-parts 0 &&   # 17,000 training images
#   DEPTHSWEEP_COMMIT=<hash> bash experiments/gpu_check.sh "$OUT" /tmp/cifar   # no .git there
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT DATA_ROOT}
data=${2:?usage: gpu_check.sh OUT DATA_ROOT}
py=${PYTHON:-python3}
deadline=${DEADLINE_S:-510}
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXX")
log=$work/gpu_check.log

say() { echo "[gpu_check $(date -u +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$log"; }
left() { echo $((deadline - SECONDS)); }
step() {  # step NAME SECONDS CMD...: run CMD under a time limit, log it, never stop the script
  local name=$1 limit=$2; shift 2
  if [ "$limit" -lt 10 ]; then say "$name: skipped, ${limit}s left"; return 1; fi
  say "$name: start (limit ${limit}s)"
  # Its own process group, so that a time-out also ends what it started (joblib's workers).
  setsid "$@" > >(tee -a "$work/$name.log") 2>&1 &
  local pid=$!
  ( sleep "$limit"; touch "$work/$name.timeout"; kill -TERM -- -"$pid"; sleep 10
    kill -KILL -- -"$pid" ) 2>/dev/null &
  local dog=$!
  wait "$pid"
  local rc=$?
  kill "$dog" 2>/dev/null
  kill -KILL -- -"$pid" 2>/dev/null  # anything it left behind
  say "$name: exit $rc$([ -f "$work/$name.timeout" ] && echo ' (timed out)')"
  return "$rc"
}
finish() {  # on any exit: the archive and the files worth reading first, into OUT
  say "archiving $work into $out"
  cp "$log" "$out/"
  for f in versions.txt bench.csv figure6_quick/summary.md figure6_quick/figure6.png \
    figure6_quick/error_vs_depth.png; do
    [ -f "$work/$f" ] && cp "$work/$f" "$out/"
  done
  tar -czf "$out/gpu_check.tar.gz" -C "$work" --exclude=checkpoints --exclude='*.ckpt' \
    --exclude=mps .
  ls -la "$out"
}
trap finish EXIT

{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c "import torch, pytorch_lightning as pl, hydra, omegaconf, sys
print('python', sys.version.split()[0]); print('torch', torch.__version__, 'cuda', torch.version.cuda,
'cudnn', torch.backends.cudnn.version()); print('lightning', pl.__version__, 'hydra', hydra.__version__,
'omegaconf', omegaconf.__version__)"
  echo "commit ${DEPTHSWEEP_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"
} > "$work/versions.txt" 2>&1
cat "$work/versions.txt" | tee -a "$log"
$py -c "import depthsweep.train" || { say "depthsweep does not import: stopping"; exit 1; }

# a. The graph tests decide which graph variants may train the figure.
variants=eager-fp32,eager-bf16
step tests 150 $py -m pytest -q -rA -p no:cacheprovider tests/test_graphed.py
passed() { grep -q "^PASSED tests/test_graphed.py::$1" "$work/tests.log"; }
if passed test_replayed_steps_train_like_eager_ones; then
  passed "test_a_graphed_run_trains_like_an_eager_run\[32-true\]" && variants+=,graph-fp32
  passed "test_a_graphed_run_trains_like_an_eager_run\[bf16-mixed\]" && variants+=,graph-bf16
fi
say "variants that may train the figure: $variants"

# b. The bench: every eager and graph variant (a failing graph variant is still worth timing),
# one job at a time. It writes each row as it is measured: a time-out keeps what came before.
DEPTHS=${DEPTHS:-20,110}
bench_args=(--data-root "$data" --archs resnet --steps "${STEPS:-100}" --warmup "${WARMUP:-20}")
step bench $(( $(left) - 330 < 120 ? $(left) - 330 : 120 )) $py -m experiments.bench \
  "${bench_args[@]}" --depths "$DEPTHS" --variants eager-fp32,eager-bf16,graph-fp32,graph-bf16 \
  --out "$work/bench.csv"
if ! grep -q ",eager-\|,graph-" "$work/bench.csv" 2>/dev/null; then
  step bench-eager 90 $py -m experiments.bench "${bench_args[@]}" --depths "$DEPTHS" \
    --variants eager-fp32 --out "$work/bench.csv"
fi

# b2. 1, 2 and 4 processes at once of the fastest variant at the deepest depth; without MPS
# processes time-slice the GPU, with it (where the image has it) their kernels overlap.
fastest=$($py -c "import sys; from depthsweep.budget import read_bench
from depthsweep.bench import fastest_variant; print(fastest_variant(read_bench(sys.argv[1])))" \
  "$work/bench.csv") || fastest=eager-fp32
jobs_args=("${bench_args[@]}" --no-reference --depths "${DEPTHS##*,}" --variants "$fastest"
  --jobs "${JOBS:-4}")
step jobs 60 $py -m experiments.bench "${jobs_args[@]}" --out "$work/bench_jobs.csv"
concurrency=$work/bench_jobs.csv
mps_off() {
  echo quit | nvidia-cuda-mps-control
  unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
}
if command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=$work/mps CUDA_MPS_LOG_DIRECTORY=$work/mps
  mkdir -p "$work/mps" && nvidia-cuda-mps-control -d &&
    step mps 60 $py -m experiments.bench "${jobs_args[@]}" --out "$work/bench_mps.csv" &&
    concurrency=$work/bench_mps.csv  # the daemon stays on for the figure
  [ "$concurrency" = "$work/bench_mps.csv" ] || mps_off
else
  say "mps: nvidia-cuda-mps-control is not on this image"
fi

# c. The quick Figure 6, planned from the bench to end with time to spare.
budget=$(( $(left) - 60 < ${FIGURE_BUDGET_S:-240} ? $(left) - 60 : ${FIGURE_BUDGET_S:-240} ))
# shellcheck disable=SC2086  # QUICK_PLAN_ARGS: more options, for the CPU dry run
if plan=$($py -m experiments.quick_plan "$work/bench.csv" "$concurrency" --budget-s "$budget" \
  --variants "$variants" ${QUICK_PLAN_ARGS:-} 2>>"$log"); then
  eval "$plan"
  say "quick figure plan ($budget s, concurrency from $(basename "$concurrency")): $(echo $plan)"
  # shellcheck disable=SC2086  # $overrides and $FIGURE_OVERRIDES are lists of Hydra overrides
  step figure $((budget + 90)) $py -m experiments.run -m experiment=figure6_quick \
    "depth=$depths" "schedule.iterations=$iterations" $overrides ${FIGURE_OVERRIDES:-} \
    hydra/launcher=joblib "hydra.launcher.n_jobs=$jobs" \
    "data.root=$data" data.download=false "hydra.sweep.dir=$work/figure6_quick"
  # Again, in case the sweep was cut off before Hydra's own analysis ran; same bytes otherwise.
  step analyze 60 $py -m experiments.analyze "$work/figure6_quick"
else
  say "no quick figure: the plan failed (see above)"
fi
[ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] && mps_off
say "done"
