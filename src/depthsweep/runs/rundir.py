"""A run directory, both sides: what a run writes there and how readers find it.

    <run_dir>/run.json               identity, size, test set, provenance, status (running, done,
                                     failed, interrupted) and, for a transfer run, its result
    <run_dir>/config.yaml            the resolved config
    <run_dir>/metrics.csv            a training run's CSV log (training.metrics_log; read back by
                                     runs.metrics)
    <run_dir>/checkpoints/last.ckpt  a training run's latest checkpoint

Training and transfer runs keep it alike (RunRecord): a run is held by one process while it
trains; a finished run with the same config is skipped; an unfinished one starts again, a
training run from its checkpoint; a directory holding a run of another configuration is refused
rather than mixed with new results.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from depthsweep.errors import UserError
from depthsweep.files import atomic_write_text

RUN_JSON, CONFIG, METRICS, LOCK = "run.json", "config.yaml", "metrics.csv", ".lock"
CHECKPOINT = Path("checkpoints") / "last.ckpt"
GRAD_PREFIX = "grad_norm/"  # metrics.csv columns grad_norm/<conv name>: training.callbacks


class ConfigMismatchError(UserError):
    """The run directory holds a run of a different configuration."""


def result_config(cfg: DictConfig, neutral: list[str] | None = None) -> dict[str, Any]:
    """The resolved config minus what does not change a run's result: the keys `neutral` lists
    (by default the config's own `neutral_keys`, also left out of run directory names) and Hydra's
    node."""
    c = OmegaConf.to_container(cfg, resolve=True)
    own = c.pop("neutral_keys", None) or []
    c.pop("hydra", None)
    for key in own if neutral is None else neutral:
        *parents, leaf = key.split(".")
        node = c
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return c


def find_runs(path: str | os.PathLike) -> list[Path]:
    """`path` itself if it is a run directory (has run.json), else every run directory below it,
    at any depth, sorted; hidden directories (.hydra, .ipynb_checkpoints) are never runs."""
    path = Path(path)
    if (path / RUN_JSON).is_file():
        return [path]
    found = (p.parent for p in path.rglob(RUN_JSON))
    return sorted(d for d in found if not any(p[0] == "." for p in d.relative_to(path).parts))


class CorruptRecordError(UserError, ValueError):
    """A run's run.json cannot be read as its record."""


def read_info(run_dir: Path) -> dict[str, Any]:
    """run.json as a dict; empty if there is none yet."""
    path = run_dir / RUN_JSON
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        info = e
    if not isinstance(info, dict):
        raise CorruptRecordError(
            f"{path} is not a run record ({info}). Delete it to resume the run from its "
            "checkpoint (or start it over, without one), or put back a good copy."
        )
    return info


def read_config(run_dir: Path) -> DictConfig:
    return OmegaConf.load(run_dir / CONFIG)


class RunRecord:
    """The writing side: one run's record, kept up to date as it trains."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.dir = Path(run_dir)
        self.json = self.dir / RUN_JSON
        self.config = self.dir / CONFIG
        self.checkpoint = self.dir / CHECKPOINT
        self.metrics = self.dir / METRICS

    def read(self) -> dict[str, Any]:
        return read_info(self.dir)

    @contextlib.contextmanager
    def claim(self) -> Iterator[bool]:
        """Hold the run directory for this process while it trains: False if another live
        process holds it (a second terminal, a requeued job). The OS releases the lock of a
        process that dies, even by kill -9, so a stale lock never blocks."""
        self.dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.dir / LOCK)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    @property
    def status(self) -> str | None:
        return self.read().get("status")

    def is_finished(self) -> bool:
        """Whether the run is done: it trained to its end and recorded its results."""
        return self.status == "done"

    def check_config(self, cfg: DictConfig) -> None:
        """Refuse to reuse a directory that holds a run of another configuration."""
        if not self.config.is_file():
            return
        saved = read_config(self.dir)
        # A key neutral to either config is neutral (a run recorded before the list grew).
        neutral = [*saved.get("neutral_keys", []), *cfg.get("neutral_keys", [])]
        old = flat_config(result_config(saved, neutral))
        new = flat_config(result_config(cfg, neutral))
        diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        if diff:
            raise ConfigMismatchError(
                f"{self.dir} holds a run with a different config (differs in: {', '.join(diff)}). "
                "Use another hydra.sweep.dir or name=, or delete that directory."
            )

    def start(self, cfg: DictConfig, info: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config, OmegaConf.to_yaml(cfg, resolve=True))
        self.update(**info, status="running", error=None)

    def update(self, **fields: Any) -> None:
        atomic_write_text(self.json, json.dumps({**self.read(), **fields}, indent=2) + "\n")

    def resume_point(self) -> Path | None:
        """The checkpoint to resume from, with metrics.csv cut back to the checkpoint's step (or
        removed, with no checkpoint) so that iterations redone are not logged twice."""
        if not self.checkpoint.is_file():  # starting over: what an earlier start logged goes
            self.metrics.unlink(missing_ok=True)
            return None
        try:
            ckpt = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            step = ckpt["global_step"]
        except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError) as e:
            raise UserError(
                f"{self.checkpoint} cannot be read ({type(e).__name__}: {e}). Delete it to train "
                "this run from the start, or put back a good copy to resume from it."
            ) from None
        if self.metrics.is_file():
            with open(self.metrics, newline="") as f:
                header, *rows = list(csv.reader(f))
            at = header.index("step")
            text = io.StringIO()  # the kept rows verbatim, with Lightning's line endings
            csv.writer(text).writerows([header, *(r for r in rows if float(r[at]) <= step)])
            atomic_write_text(self.metrics, text.getvalue())
        return self.checkpoint


def flat_config(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as {'a.b.c': value}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
