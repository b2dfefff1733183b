"""Train one run, or a sweep with -m: python -m experiments.run -m depth=20,56 arch=plain,resnet

Exit codes: 0 all runs done (or skipped: finished before, or running elsewhere); 1 a fault
outside a run's record (a bug: one line naming the run directory, at once, also in a sweep), or
Hydra's own error (an unknown config group); 2 a setup error (bad data, option or directory: its
message alone, nothing trained, nothing left behind; before Hydra runs, an option the config
lacks, whose `+KEY` would add a key nothing reads, a `+hydra.KEY` Hydra's plugins do not read,
`arch_name` set, a node of options given one value: `training.overrides`); 3 a run failed
(one line when it happens; in a sweep: any run, the others went on, after the summary);
130 / 143 interrupted by Ctrl-C / SIGTERM (a checkpoint at the current step: the same command
resumes there). HYDRA_FULL_ERROR=1 adds the traceback to any of these lines.
"""

import contextlib
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from depthsweep.errors import INTERRUPTED, RUN_FAILED, USER_ERROR, UserError
from depthsweep.training.callbacks import Terminated
from depthsweep.training.config import home_expanded
from depthsweep.training.group import train_group
from depthsweep.training.overrides import command_line_error
from depthsweep.training.sweeper import group_members, mark_stopped, stoppable_job, stopped_by
from depthsweep.training.train import Interrupted, train
from experiments.exits import setup_error, unexpected_error


def _runs(cfg: DictConfig, hc) -> list[tuple[DictConfig, Path]]:
    """The runs this job trains: its own, or a fused group's (`fused_group`, set by the sweeper)."""
    own = Path(hc.runtime.output_dir)
    if cfg.get("fused_group") is None:
        return [(cfg, own)]
    try:
        members = group_members(hc.sweep.dir, cfg.fused_group, own)
    except UserError as e:
        setup_error(e, [own], sweep=True)
    return [(m["config"], Path(m["run_dir"])) for m in members]


def run(runs: list[tuple[DictConfig, Path]], sweep_dir: Path | None = None) -> str | float:
    """One job of `experiments.run`: train its runs (config, run directory; a fused group's, or
    one), then turn the outcome into the exit codes above (SystemExit). Returns the status, or the
    first run's `optimized_metric` for a search. `sweep_dir`: the sweep's, None for a single run.

    A signal stops a single run with its exit code at once. In a sweep the job returns
    'interrupted' instead and marks the sweep stopped: jobs queued behind it then return at once
    without training, and the sweeper exits with the signal's code once every job has returned.
    Raised in a launcher's worker, the exit would make the launcher kill the other workers while
    they still save their own checkpoints (joblib aborts on a job's first exception)."""
    cfg, run_dir = runs[0]
    sweep = sweep_dir is not None
    if sweep and stopped_by(sweep_dir):
        print(f"[{run_dir.name}] not started: the sweep was interrupted", flush=True)
        return "interrupted"
    try:
        with stoppable_job() if sweep else contextlib.nullcontext():
            status = train_group(runs) if len(runs) > 1 else train(cfg, run_dir)
    except UserError as e:
        setup_error(e, [member_dir for _, member_dir in runs], sweep)
    except (Interrupted, KeyboardInterrupt, Terminated) as e:
        signal = "SIGTERM" if isinstance(e, Terminated) else getattr(e, "signal", "SIGINT")
        if not sweep:
            raise SystemExit(INTERRUPTED[signal]) from None
        mark_stopped(sweep_dir, signal)
        return "interrupted"
    except Exception as e:  # not a run's failure (each run records its own): said now
        unexpected_error(e, [member_dir for _, member_dir in runs])
    if status == "failed" and not sweep:  # in a sweep, the other runs go on
        raise SystemExit(RUN_FAILED)
    if cfg.optimized_metric:  # what a search (hparams_search=...) minimises or maximises
        from depthsweep.runs.metrics import final_error  # pandas: loaded for searches only

        return final_error(run_dir, cfg.optimized_metric)
    return status


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> str | float:
    hc = HydraConfig.get()
    if hc.mode == RunMode.RUN and hc.sweeper.get("params"):  # experiment=figure6_cpu, no -m
        chosen = [f"{g}={hc.runtime.choices[g]}" for g in ("experiment", "hparams_search")
                  if hc.runtime.choices.get(g)]  # fmt: skip
        print(
            f"note: {' '.join(chosen) or 'this config'} sweeps {', '.join(hc.sweeper.params)} "
            "(hydra.sweeper.params): without -m this trains one run; add -m for the sweep",
            flush=True,
        )
    return run(_runs(cfg, hc), Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None)


if __name__ == "__main__":
    sys.argv = home_expanded(sys.argv)
    refused = command_line_error(sys.argv[1:])  # schedule.lr=0.05: before Hydra, any launch
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        raise SystemExit(USER_ERROR)
    main()
