#!/usr/bin/env bash
# Everything that needs the GPU, as prepared device calls (python -m experiments.gpu_check --help;
# src/depthsweep/tools/gpu_check.py says what each step runs).
#
# Issue #18's window, Figure 6 on all 50,000 training images, in two calls of one warm machine
# (results/gpu/README.md gives the exact `run` calls, their carry lists, limits and timings):
#   here, once:  bash experiments/gpu_prepare.sh ../shared/data/cifar10 ../shared/device-wheels
#   call 1:      bash experiments/gpu_check.sh call1                     carry .gpu_call1
#   call 2:      bash experiments/gpu_check.sh call2 --deadline-s 420    carry .gpu_call2
#                at once: the stash that call 1 leaves (.gpu_stash) lasts only while the machine
#                stays warm (about 30 s); on a fresh machine call 2 stops at once with exit 3.
# Each installs the carried wheels (Hydra, omegaconf, antlr4, the joblib launcher; the image has
# torch, Lightning, pandas, matplotlib, scipy, pytest) into $GPU_CHECK_SITE (default /tmp/site)
# and writes its files to $OUT. A CPU dry run appends --dry-run (tiny sizes): see
# results/gpu/README.md.
#
# The one-call quick check on the 17,000 images of part 0 (ran in 392 s on an H200, results/gpu):
#   bash experiments/gpu_check.sh OUT DATA_ROOT [options of experiments.gpu_check]
# prepared here with (.whl and .devdata ignored through .git/info/exclude):
#   mkdir -p .whl .devdata && cp ../shared/device-wheels/*.whl .whl/
#   cp ../shared/data/cifar10/{cifar10_train_0.npz,cifar10_test.npz,verify.py,materialize.py} .devdata/
# then run there, carrying .whl and .devdata (about 41 MB):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site:$PWD/src:$PWD &&
#   python3 .devdata/materialize.py /tmp/cifar --train-parts 0 &&   # 17,000 training images
#   DEPTHSWEEP_COMMIT=<hash> bash experiments/gpu_check.sh "$OUT" /tmp/cifar   # no .git there
set -euo pipefail
PY=${PYTHON:-python3}
case "${1:-}" in
  call1|call2)
    call=$1
    shift
    stash=.gpu_stash
    out=${OUT:?gpu_check: OUT is not set (the device sets it; a dry run sets it by hand)}
    if [ "$call" = call2 ] && [ ! -f "$stash/CALL1" ]; then
      mkdir -p "$out"
      echo "[gpu_check call2] stopped: call 1's files are gone ($stash/CALL1 is missing): the" \
        "device machine was given back between the calls (it stays warm about 30 s), so this" \
        "is a fresh one. Nothing was trained. Make call 1 again, then call 2 at once." |
        tee "$out/call2.log" >&2
      exit 3
    fi
    wheels=.gpu_call1/wheels
    [ "$call" = call2 ] && wheels=$stash/wheels
    site=${GPU_CHECK_SITE:-/tmp/site}
    # The image lacks Hydra; a dry run with it installed sets GPU_CHECK_INSTALL=1 to try this too.
    if [ -n "${GPU_CHECK_INSTALL:-}" ] ||
      ! "$PY" -c "import hydra, omegaconf, hydra_plugins.hydra_joblib_launcher" 2>/dev/null; then
      ls "$wheels"/*.whl >/dev/null || { echo "gpu_check: no wheels in $wheels" >&2; exit 3; }
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$wheels"/*.whl
      export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
    fi
    export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}
    "$PY" -c "import depthsweep.training.train" || {
      echo "gpu_check: depthsweep does not import: stopping" >&2; exit 1; }
    exec "$PY" -m experiments.gpu_check "$call" "$out" "$@"
    ;;
esac
"$PY" -c "import depthsweep.training.train" || {
  echo "gpu_check: depthsweep does not import: stopping" >&2; exit 1; }
exec "$PY" -m experiments.gpu_check "$@"
