"""Write small synthetic sweep directories shaped like the training code's output.

Curves are simple closed forms so tests can assert exact summary values:
- train_error, logged every `log_every` steps: `train + 30 * (1 - step / iters)`,
  so the mean over the last 5% (steps >= 0.95 * iters) is `train + 0.75` for the defaults, and
  each run's within-run SE (the scatter about a straight line) is 0;
- test_error, logged every `epoch_len` steps: `test + 10 * (1 - step / iters)`, except one
  dip to `test - 0.5` at step 0.9 * iters, so best = `test - 0.5` and final = `test`;
- wall_time = step / 100 seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from depthsweep.training.data import OFFICIAL_TEST_MD5

CONF = Path(__file__).resolve().parents[1] / "conf"


def write_run(
    sweep: Path,
    arch: str,
    depth: int,
    seed: int = 0,
    train: float = 2.0,
    test: float = 10.0,
    iters: int = 1000,
    target: int | None = None,
    status: str = "done",
    error: str | None = None,
    metrics: bool = True,
    log_every: int = 5,
    epoch_len: int = 100,
    **extra_run_json,
) -> Path:
    """One run dir with run.json and (unless `metrics=False`) a sparse Lightning-style CSV."""
    run_dir = sweep / f"arch={arch},depth={depth},seed={seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    info = {
        "arch": arch,
        "depth": depth,
        "seed": seed,
        "params": 1000 * depth,
        "macs": 50000 * depth,
        "iterations": target or iters,
        "status": status,
        "error": error,
        "first_step_s": 0.25,
        "test_images": 10_000,  # as if on the official test set
        "test_md5": OFFICIAL_TEST_MD5,
        "test_official": True,
        "host": "fake",  # unknown keys must be ignored
    } | extra_run_json
    (run_dir / "run.json").write_text(json.dumps(info))
    known = CONF / "arch" / f"{arch}.yaml"  # the resolved config, in short: what the arch sets
    arch_cfg = OmegaConf.load(known) if known.is_file() else {"arch_name": arch, "arch": {}}
    cfg = OmegaConf.merge(arch_cfg, {"depth": depth, "seed": seed})
    OmegaConf.save(cfg, run_dir / "config.yaml")
    if not metrics:
        return run_dir
    rows = []
    for step in range(1, iters + 1):
        if step % log_every == 0:
            rows.append(
                {
                    "step": step,
                    "epoch": step // epoch_len,
                    "lr": 0.1,
                    "train_error": train + 30 * (1 - step / iters),
                    "train_loss": 1.0,
                    "grad_norm/layer3.2.conv2": 0.5,
                    "wall_time": step / 100,
                }
            )
        if step % epoch_len == 0:
            dip = step == round(0.9 * iters)
            rows.append(
                {
                    "step": step,
                    "epoch": step // epoch_len - 1,
                    "test_error": test - 0.5 if dip else test + 10 * (1 - step / iters),
                    "test_loss": 0.4,
                    "train_error_epoch": train,
                    "train_loss_epoch": 0.1,
                    "wall_time": step / 100,
                }
            )
    pd.DataFrame(rows).to_csv(run_dir / "metrics.csv", index=False)
    return run_dir


def write_sweep(sweep: Path, runs: list[dict]) -> Path:
    """A sweep dir holding Hydra's multirun.yaml and one run per dict of `write_run` kwargs."""
    sweep.mkdir(parents=True, exist_ok=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    for run in runs:
        write_run(sweep, **run)
    return sweep


def degradation_sweep(sweep: Path) -> Path:
    """plain's train error rises with depth, resnet's falls; two seeds each (means as stated)."""
    return write_sweep(
        sweep,
        [
            {"arch": "plain", "depth": 20, "seed": 0, "train": 1.0, "test": 9.0},
            {"arch": "plain", "depth": 20, "seed": 1, "train": 2.0, "test": 10.0},
            {"arch": "plain", "depth": 56, "seed": 0, "train": 5.0, "test": 13.0},
            {"arch": "plain", "depth": 56, "seed": 1, "train": 7.0, "test": 14.0},
            {"arch": "resnet", "depth": 20, "seed": 0, "train": 3.0, "test": 8.5},
            {"arch": "resnet", "depth": 20, "seed": 1, "train": 3.0, "test": 9.0},
            {"arch": "resnet", "depth": 56, "seed": 0, "train": 1.0, "test": 7.0},
            {"arch": "resnet", "depth": 56, "seed": 1, "train": 1.0, "test": 7.0},
        ],
    )
