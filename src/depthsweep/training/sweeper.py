"""What the sweeper of `experiments.run -m` (hydra_plugins/depthsweep_sweeper) does between
expanding a sweep and launching it: Hydra's basic sweep, checked before it starts and with
same-shape runs fused.

Jobs are the cartesian product of the command line's and `hydra.sweeper.params`' comma lists, in
the basic sweeper's order. Hydra's own BasicSweeper lives in a private module, and two things
must happen between expanding the lists and launching, which it has no hook for:

1. Every job's config is composed and its options checked (`check`), so that a bad value late
   in a list (depth=8,7) stops the sweep before its first run trains, with nothing written.
2. With `fuse=K` (K > 1), runs that can train as one fused network (`fusion_key`: same shapes and
   schedule, differing only in seed, plain vs resnet, lr, weight decay, warm-up) are launched K at
   a time: one job per group, under any launcher. The group's members and run directories go
   into `<sweep dir>/.fused/groups.json`; the job is the first member's, with `+fused_group=N`.

And while it runs, a signal stops it whole: the jobs that were training save their checkpoints
and return, queued ones do not start (`STOPPED`, `waiting_for_workers`).
"""

from __future__ import annotations

import inspect
import itertools
import json
import signal
import sys
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from depthsweep.errors import UserError
from depthsweep.files import atomic_write_text
from depthsweep.nets.models import CifarNet
from depthsweep.runs.rundir import flat_config, result_config
from depthsweep.training.callbacks import Terminated
from depthsweep.training.config import resolve_fuse
from depthsweep.training.workers import loky_workers_ignoring_stop_signals, stop_signals_to

PLAN = Path(".fused") / "groups.json"
# Written into a sweep directory when a signal stops it (its content: the signal's name): jobs
# queued behind the interrupted ones see it and do not start; the next launch removes it.
STOPPED = Path(".interrupted")
# A member's own: what may differ between the runs of one fused group.
MEMBER_KEYS = ("seed", "arch_name", "arch.", "schedule.optimizer.lr")
MEMBER_KEYS += ("schedule.optimizer.weight_decay", "schedule.warmup.")
SGD_OPTIONS = {"_target_", "_partial_", "lr", "momentum", "weight_decay"}
FUSABLE_ARCHS = {"plain", "resnet"}  # PlainBlock/BasicBlock nets (depthsweep.training.fused)
DEFAULT_WIDTH = inspect.signature(CifarNet).parameters["width"].default  # an arch without one


def expand(arguments: Sequence[str], parser: OverridesParser) -> list[list[str]]:
    """The jobs of a sweep: the cartesian product of the discrete sweeps (a=1,2), each job a
    list of overrides, in Hydra's basic sweeper's order."""
    lists: OrderedDict[str, list[str]] = OrderedDict()
    for override in parser.parse_overrides(list(arguments)):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise HydraException(f"{key}: only comma-separated lists (a=1,2) are swept here")
            lists[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            lists[key] = [f"{key}={override.get_value_element_as_str()}"]
    return [list(job) for job in itertools.product(*lists.values())]


def fusion_key(cfg: DictConfig) -> str | None:
    """What a run must share with the others of its fused group (its config less its members'
    own keys, plus the shortcut type and the width: a FusedNet has one of each), or None if it
    trains alone: fuse <= 1, an arch that does not fuse, extras that expect one net per process
    (gradient-norm logging, added loggers or callbacks), or what would couple the members (one
    gradient-norm clip over all of them; fp16's one loss scaler, whose skipped steps would skip
    every member's)."""
    fuse = resolve_fuse(cfg)
    if not isinstance(fuse, int) or fuse <= 1 or cfg.get("arch_name") not in FUSABLE_ARCHS:
        return None
    if cfg.diagnostics.grad_norm_every or cfg.logger or cfg.callbacks:
        return None
    # As typed, not as resolved on this host: a sweep planned on a login node trains on GPUs
    if cfg.trainer.get("gradient_clip_val") or str(cfg.trainer.precision).startswith("16"):
        return None
    optimizer = cfg.schedule.optimizer
    if optimizer.get("_target_") != "torch.optim.SGD" or set(optimizer) - SGD_OPTIONS:
        return None  # FusedSGD is SGD with momentum and weight decay, nothing else
    if cfg.module.get("_target_") != "depthsweep.training.module.Classifier":
        return None
    flat = flat_config(result_config(cfg))
    shared = {k: v for k, v in flat.items() if not k.startswith(MEMBER_KEYS)}
    shared["arch.shortcut"] = flat.get("arch.shortcut", "A")  # plain's: the paper's A
    shared["arch.width"] = flat.get("arch.width", DEFAULT_WIDTH)  # one FusedNet: one shape
    return json.dumps(shared, sort_keys=True, default=str)


def fuse(jobs: Sequence[tuple[list[str], DictConfig]]) -> list[list[int]]:
    """The jobs (indices) grouped K at a time by `fusion_key`, in order of their first member;
    a run that fuses with nothing is a group of one."""
    groups: OrderedDict[str, list[list[int]]] = OrderedDict()
    for i, (_, cfg) in enumerate(jobs):
        cfg = task_config(cfg)
        key = fusion_key(cfg)
        if key is None:
            groups[f"alone {i}"] = [[i]]
            continue
        chunks = groups.setdefault(key, [[]])
        if len(chunks[-1]) == resolve_fuse(cfg):
            chunks.append([])
        chunks[-1].append(i)
    ordered = [chunk for chunks in groups.values() for chunk in chunks]
    return sorted(ordered, key=lambda g: g[0])


def task_config(cfg: DictConfig) -> DictConfig:
    """A job's config as its run sees it: without Hydra's node."""
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])


def plan(jobs: Sequence[tuple[list[str], DictConfig]], sweep_dir: Path) -> list[list[str]]:
    """The jobs to launch for `jobs` (overrides, composed config): a fused group as its first
    member's job with `+fused_group=N`, its members written to `sweep_dir`/PLAN (overrides, run
    directory, resolved config)."""
    launched, groups = [], []
    for g in fuse(jobs):
        overrides = list(jobs[g[0]][0])
        if len(g) > 1:
            overrides.append(f"+fused_group={len(groups)}")
            groups.append([_member(*jobs[i]) for i in g])
        launched.append(overrides)
    if groups:
        (sweep_dir / PLAN).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(sweep_dir / PLAN, json.dumps(groups, indent=2) + "\n")
    return launched


def _member(overrides: list[str], cfg: DictConfig) -> dict[str, Any]:
    """A fused group's member as its job reads it back: overrides, run directory, config."""
    return {
        "overrides": overrides,
        "run_dir": str(Path(cfg.hydra.sweep.dir) / cfg.hydra.sweep.subdir),
        "config": OmegaConf.to_container(task_config(cfg), resolve=True),
    }


def mark_stopped(sweep_dir: str | Path, signal: str) -> None:
    """Record that `signal` stopped the sweep (the first signal's name is kept)."""
    path = Path(sweep_dir) / STOPPED
    if not path.exists():
        atomic_write_text(path, signal)


def stopped_by(sweep_dir: str | Path) -> str | None:
    """The signal that stopped the sweep since its launch, or None."""
    path = Path(sweep_dir) / STOPPED
    return path.read_text(encoding="utf-8").strip() or "SIGINT" if path.is_file() else None


@contextmanager
def stoppable_job() -> Iterator[None]:
    """While one job of a sweep runs: SIGINT raises KeyboardInterrupt and SIGTERM Terminated
    wherever the job is (training takes both to a step boundary with its own handlers), so that
    the job returns 'interrupted', in a launcher's worker too; then the handlers it found again,
    in a worker SIG_IGN (between jobs a worker must not die of Ctrl-C: training.workers)."""
    running = True

    def stop(signum: int, frame: Any) -> None:
        if running:  # not once the job has ended
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated("SIGTERM")

    with stop_signals_to(stop):
        try:
            yield
        finally:
            running = False


@contextmanager
def waiting_for_workers(sweep_dir: Path, workers: bool) -> Iterator[None]:
    """While a launcher runs jobs in worker processes (`workers`): the first SIGINT or SIGTERM the
    launching process gets marks the sweep stopped and lets the launch go on, so that the workers,
    which get the same signal from the terminal or the cluster, save their checkpoints and return
    (queued jobs see the mark and do not start); a second SIGINT stops at once. Otherwise
    Ctrl-C's KeyboardInterrupt in the launcher would kill the workers mid-save (measured: a fused
    group of figure6_cpu left `running`, its steps since the last checkpoint lost). The workers
    ignore both signals between jobs (`depthsweep.training.workers`)."""
    if not workers:  # the jobs run in this process: their own handlers stop them
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if stopped_by(sweep_dir) and signum == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: now
        mark_stopped(sweep_dir, name)
        print(
            f"{name}: waiting for the running jobs to save their checkpoints (Ctrl-C again to "
            "stop at once, losing what they trained since their last one)",
            file=sys.stderr,
            flush=True,
        )

    with stop_signals_to(stop), loky_workers_ignoring_stop_signals():
        yield


def group_members(sweep_dir: str | Path, group: int, run_dir: str | Path) -> list[dict[str, Any]]:
    """The members of fused group `group` of a sweep: overrides, run_dir, config (a DictConfig).
    `run_dir` is the job's own: the group's first member's, unless the plan was rewritten by a
    later launch into the same sweep directory since this job was queued (a requeued job)."""
    path = Path(sweep_dir) / PLAN
    try:
        members = json.loads(path.read_text(encoding="utf-8"))[group]
    except (OSError, ValueError, IndexError, TypeError) as e:
        raise UserError(f"fused group {group}: cannot read it from {path} ({e})") from None
    if Path(members[0]["run_dir"]).absolute() != Path(run_dir).absolute():
        raise UserError(
            f"fused group {group} of {path} is not this job's ({run_dir}): the sweep directory "
            "was launched again with other runs since this job was queued; run that sweep's "
            "command again to train it"
        )
    return [m | {"config": OmegaConf.create(m["config"])} for m in members]
