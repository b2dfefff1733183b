"""The sweeper of `experiments.run -m` (conf/config.yaml, hydra.sweeper). Hydra loads sweepers
from this namespace package only; what it does between expanding a sweep and launching it lives
in depthsweep.training.sweeper. Hydra's own BasicSweeper sits in a private module and has no hook
there."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from depthsweep.errors import INTERRUPTED, USER_ERROR, UserError, full_error
from depthsweep.runs.rundir import RunRecord
from depthsweep.tools.sweep_size import describe, runs_at_once
from depthsweep.training.data import FOLDER, check_limit, ensure_cifar10, training_images
from depthsweep.training.sweeper import (
    STOPPED,
    expand,
    fuse,
    plan,
    stopped_by,
    task_config,
    waiting_for_workers,
)
from depthsweep.training.train import preflight
from depthsweep.training.workers import stop_signals_to


class DepthSweeper(Sweeper):
    """Hydra's basic sweep: every job's options checked (`depthsweep.training.train.preflight`)
    before the first one trains; with fuse=K, same-shape runs launched K to a job
    (depthsweep.training.sweeper.plan).
    Its options are the basic sweeper's (the schema of hydra/sweeper/basic)."""

    def __init__(
        self, max_batch_size: int | None = None, params: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        if max_batch_size is not None:  # the basic sweeper's option (the config schema's)
            raise ValueError("hydra.sweeper.max_batch_size: every job is launched in one batch")
        self.params = dict(params or {})
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        loader = self.hydra_context.config_loader
        params = [f"{k}={v}" for k, v in self.params.items()]
        batch = expand([*params, *arguments], OverridesParser.create(config_loader=loader))
        jobs = [
            (job, loader.load_sweep_config(master_config=self.config, sweep_overrides=job))
            for job in batch
        ]
        configs = [task_config(cfg) for _, cfg in jobs]
        try:
            for (_, job), cfg in zip(jobs, configs, strict=True):  # before the first one trains
                preflight(cfg, job.hydra.overrides.task, job.hydra.job.config_name)
            # Missing data fetched once here, or said now (offline, download=false), before the
            # estimate and before anything is written: each job fetching it left a fused
            # sweep's plan and its members' directories behind when the download failed.
            download: dict[str, bool] = {}  # a root some job may download into: fetched
            for c in configs:
                allowed = bool(c.data.get("download", True))
                download[c.data.root] = download.get(c.data.root, False) or allowed
            for root in sorted(download):
                ensure_cifar10(root, download=download[root])
            limits = {(c.data.root, c.data.limit) for c in configs if c.data.get("limit")}
            available = {root: training_images(root) for root in sorted({r for r, _ in limits})}
            for root, limit in sorted(limits):  # each run's data.limit, there before any trains
                check_limit(limit, available[root], Path(root) / FOLDER)
        except UserError as e:  # as experiments.run reports a run's: one line, exit 2
            if full_error():
                raise
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(USER_ERROR) from None
        run_dirs = [Path(cfg.hydra.sweep.dir) / cfg.hydra.sweep.subdir for _, cfg in jobs]
        finished = [RunRecord(d).is_finished() for d in run_dirs]  # skipped: not timed
        # its size, and on a CPU how long it will take
        at_once = runs_at_once(self.config.hydra.launcher)
        asked = []  # Ctrl-C's, also where Python ignores its KeyboardInterrupt (a finalizer's)

        def stop(signum: int, frame: Any) -> None:
            asked.append(signum)
            raise KeyboardInterrupt

        try:  # the estimate times steps for some seconds: Ctrl-C there stops a sweep not started
            with stop_signals_to(stop, (signal.SIGINT,)):
                for line in describe(configs, at_once, finished, fuse(jobs)):
                    print(line, flush=True)
            if asked:  # (twice in loaded CI runs a Ctrl-C there went unheeded; cause not found)
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            print("interrupted before any run started: nothing trained", file=sys.stderr)
            raise SystemExit(INTERRUPTED["SIGINT"]) from None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        (sweep_dir / STOPPED).unlink(missing_ok=True)  # an earlier launch's: this one resumes
        launched = plan(jobs, sweep_dir)
        with waiting_for_workers(sweep_dir, at_once > 1):
            results = self.launcher.launch(launched, initial_job_idx=0)
        for r in results:
            _ = r.return_value  # re-raises a job's exception, as the basic sweeper does
        stopped = stopped_by(sweep_dir)
        if stopped:
            print(
                f"interrupted by {stopped}: the runs stopped have their checkpoints at the step "
                "they reached, and the same command resumes the sweep",
                file=sys.stderr,
            )
            raise SystemExit(INTERRUPTED[stopped])
        return [results]
