"""Train one run, or a sweep with -m: python -m experiments.run -m depth=20,56 arch=plain,resnet

Exit codes: 0 all runs done (or skipped: finished before, or running elsewhere); 2 a setup error
(bad data, option or directory: its message alone, nothing trained, nothing left behind); 3 a run
failed (in a sweep: any run; the others went on); 130 / 143 interrupted by Ctrl-C / SIGTERM (a
checkpoint at the current step: the same command resumes there). HYDRA_FULL_ERROR=1 adds the
traceback to a setup error.
"""

import os
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from depthsweep.errors import INTERRUPTED, RUN_FAILED, USER_ERROR, UserError
from depthsweep.runs.rundir import RUN_JSON
from depthsweep.training.train import Interrupted, train


def _discard(run_dir: Path, sweep: bool) -> None:
    """A setup error leaves nothing behind: Hydra made the run's directory (and a sweep's)."""
    if run_dir.is_dir() and not (run_dir / RUN_JSON).exists():
        shutil.rmtree(run_dir)
        left = {p.name for p in run_dir.parent.iterdir()}
        if sweep and left <= {"multirun.yaml", ".submitit"}:
            shutil.rmtree(run_dir.parent)


def run(cfg: DictConfig, run_dir: Path, sweep: bool) -> str | float:
    """One run of `experiments.run`: train it into `run_dir`, then turn the outcome into the exit
    codes above (SystemExit). Returns the run's status, or its `optimized_metric` for a search."""
    try:
        status = train(cfg, run_dir)
    except UserError as e:
        _discard(run_dir, sweep)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(USER_ERROR) from None
    except (Interrupted, KeyboardInterrupt) as e:
        raise SystemExit(INTERRUPTED[getattr(e, "signal", "SIGINT")]) from None
    if status == "failed" and not sweep:  # in a sweep, the other runs go on
        raise SystemExit(RUN_FAILED)
    if cfg.optimized_metric:  # what a search (hparams_search=...) minimises or maximises
        from depthsweep.runs.metrics import final_error  # pandas: loaded for searches only

        return final_error(run_dir, cfg.optimized_metric)
    return status


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> str | float:
    hc = HydraConfig.get()
    return run(cfg, Path(hc.runtime.output_dir), sweep=hc.mode == RunMode.MULTIRUN)


if __name__ == "__main__":
    main()
