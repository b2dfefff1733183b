#!/usr/bin/env bash
# Everything that needs the GPU, in one prepared call of at most 9 minutes: the CUDA-graph tests,
# the bench (with concurrency, and MPS where the image has it), and a quick Figure 6 planned from
# the bench (python -m experiments.gpu_check --help; depthsweep/tools/gpu_check.py says what it
# runs). On a GPU it ran in 392 s (results/gpu).
#
#   bash experiments/gpu_check.sh OUT DATA_ROOT [options of experiments.gpu_check]
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
set -euo pipefail
"${PYTHON:-python3}" -c "import depthsweep.training.train" || {
  echo "gpu_check: depthsweep does not import: stopping" >&2; exit 1; }
exec "${PYTHON:-python3}" -m experiments.gpu_check "$@"
