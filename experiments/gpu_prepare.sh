#!/usr/bin/env bash
# Prepare issue #18's two device calls (experiments/gpu_check.sh call1, call2) on the developer's
# machine: fill the two carried folders from the shared CIFAR-10 copy and the device wheels, check
# every file's sha256, check that each call stays under the 64 MiB a device call carries (working
# tree included), and print the two `run` calls.
#
#   bash experiments/gpu_prepare.sh SHARED_CIFAR_DIR WHEELS_DIR
#   e.g. bash experiments/gpu_prepare.sh ../shared/data/cifar10 ../shared/device-wheels
#
# .gpu_call1/ (about 40 MiB): cifar10_train_0.npz, cifar10_test.npz, verify.py, materialize.py,
#   wheels/*.whl, COMMIT. The official materialize.py reads the test file whatever parts it
#   writes, so the call that benches on part 0 needs it.
# .gpu_call2/ (about 54 MiB): cifar10_train_1.npz, cifar10_train_2.npz.
# Both, and the device's stash .gpu_stash/, are git-ignored (.gitignore): a folder that is not
# ignored would travel with every call as part of the working tree. Only this tooling reads the
# shared folders; the package never does.
set -euo pipefail
src=${1:?usage: gpu_prepare.sh SHARED_CIFAR_DIR WHEELS_DIR}
wheels=${2:?usage: gpu_prepare.sh SHARED_CIFAR_DIR WHEELS_DIR}
src=$(cd "$src" && pwd)
wheels=$(cd "$wheels" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

rm -rf .gpu_call1 .gpu_call2
mkdir -p .gpu_call1/wheels .gpu_call2
cp "$src"/{cifar10_train_0.npz,cifar10_test.npz,verify.py,materialize.py} .gpu_call1/
cp "$wheels"/*.whl .gpu_call1/wheels/
cp "$src"/{cifar10_train_1.npz,cifar10_train_2.npz} .gpu_call2/
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  dirty=$(git status --porcelain --untracked-files=no | head -c1)
  echo "$(git rev-parse HEAD)${dirty:+ (uncommitted changes to tracked files)}" >.gpu_call1/COMMIT
  for d in .gpu_call1 .gpu_call2 .gpu_stash; do
    git check-ignore -q "$d/x" || { echo "gpu_prepare: $d is not git-ignored" >&2; exit 1; }
  done
else
  echo "${DEPTHSWEEP_COMMIT:-unknown (no git checkout)}" >.gpu_call1/COMMIT
fi

"$PY" - <<'PYTHON'
import hashlib
import os
import re
import subprocess
from pathlib import Path

MIB = 2**20
LIMIT = 64 * MIB  # what one device call carries: working tree and carried folders together
want = dict(re.findall(r'"(cifar10_\w+\.npz)": "([0-9a-f]{64})"', Path(".gpu_call1/verify.py").read_text()))
for folder in (".gpu_call1", ".gpu_call2"):
    for path in sorted(Path(folder).glob("*.npz")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != want.get(path.name):
            raise SystemExit(f"gpu_prepare: {path}: sha256 {digest} is not verify.py's")
        print(f"sha256 ok  {path} ({path.stat().st_size:,} bytes)")


def size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


try:  # the working tree as it travels: tracked and untracked-not-ignored files
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.split(b"\0")
    files = [Path(os.fsdecode(f)) for f in listed if f]
    tree = sum(f.stat().st_size for f in files if f.is_file() and not f.is_symlink())
except (OSError, subprocess.CalledProcessError):  # no git: everything but the carried folders
    skip = (".gpu_call1", ".gpu_call2", ".gpu_stash", ".git")
    tree = sum(size(p) if p.is_dir() else p.stat().st_size
               for p in Path(".").iterdir() if p.name not in skip and not p.is_symlink())
failed = False
for folder in (".gpu_call1", ".gpu_call2"):
    total = tree + size(Path(folder))
    ok = total < LIMIT
    failed |= not ok
    print(f"call carrying {folder}: {total / MIB:.1f} MiB with the working tree "
          f"({tree / MIB:.1f} MiB), {'under' if ok else 'OVER'} 64 MiB "
          f"({(LIMIT - total) / MIB:+.1f} MiB to spare)")
if failed:
    raise SystemExit("gpu_prepare: a call would carry more than 64 MiB")
PYTHON

cat <<'PLAN'

The two device calls (results/gpu/README.md says what each does and how long it should take):

  1. run(command="bash experiments/gpu_check.sh call1", carry=[".gpu_call1"], timeout_s=300)
  2. AT ONCE, in the very next message (the machine stays warm about 30 s after a call, and
     call 2 needs the stash call 1 left on it):
     run(command="bash experiments/gpu_check.sh call2 --deadline-s 420", carry=[".gpu_call2"],
         timeout_s=480)
     where call 1's reply shows lease.budget_left_s other than 520: --deadline-s D with
     D = min(540, budget_left_s - 100), and timeout_s D + 60.
Then: tar -xzf <files_at>/figure6.tar.gz (it holds results/gpu/<date>-figure6/), and follow the
checklist in results/gpu/README.md.
PLAN
