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
import logging
import os
import pickle
import shutil
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
# A run's results, from metrics.csv (runs.metrics; a search's `optimized_metric`). best_test_error
# is the minimum over evaluations, so chosen on the test set itself (optimistic);
# test_error_at_best_val is chosen on the validation split, where there is one.
ERROR_COLUMNS = [
    *["final_train_error", "final_test_error", "best_test_error", "test_error_at_best_val"],
]


log = logging.getLogger(__name__)


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


def unreadable(e: BaseException) -> str:
    """Why torch.load refused a file, in one line: torch's messages run to paragraphs (and advise
    weights_only=False, which would let the file run code)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            detail = line.split("WeightsUnpickler error:", 1)[1].strip()
            detail = detail or (lines[i + 1] if i + 1 < len(lines) else "")
            return f"a weights-only load refuses what it holds: {detail}"
    first = lines[0].split(". ")[0] if lines else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


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
        self.resumed_at: int | None = None  # set by resume_point
        self.evaluated_at: float | None = None

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

    @contextlib.contextmanager
    def claimed(self, cfg: DictConfig, label: str) -> Iterator[str | None]:
        """`claim`, then the checks before training, for training and transfer runs alike: yields
        None while the run is this process's to train, else why not, said in one line: 'busy'
        (another process holds it) or 'skipped' (it finished before). A directory of another
        configuration is refused (check_config)."""
        with self.claim() as held:
            if not held:
                log.warning(
                    f"[{label}] running elsewhere (another process holds {self.dir}): skipped"
                )
                yield "busy"
                return
            self.check_config(cfg)
            if self.is_finished():
                log.info(f"[{label}] already finished in {self.dir}: skipped")
                yield "skipped"
                return
            yield None

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
                "Use another hydra.run.dir (in a sweep, hydra.sweep.dir) or name=, or delete that "
                "directory."
            )

    def start(self, cfg: DictConfig, info: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config, OmegaConf.to_yaml(cfg, resolve=True))
        self.update(**info, status="running", error=None)

    def update(self, **fields: Any) -> None:
        atomic_write_text(self.json, json.dumps({**self.read(), **fields}, indent=2) + "\n")

    def saved(self) -> dict[str, Any] | None:
        """The run's checkpoint (None without one), read weights-only; one that cannot be read,
        or that holds no `global_step`, is a UserError naming the fix."""
        if not self.checkpoint.is_file():
            return None
        try:
            ckpt = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            ckpt["global_step"]  # a KeyError if it is no Lightning checkpoint
        except (OSError, RuntimeError, EOFError, KeyError, pickle.UnpicklingError) as e:
            raise UserError(
                f"{self.checkpoint} cannot be read ({unreadable(e)}). Delete it to train "
                "this run from the start, or put back a good copy to resume from it."
            ) from None
        return ckpt

    def resume_point(self) -> Path | None:
        """The checkpoint to resume from, with metrics.csv cut back to the checkpoint's step (or
        removed, with no checkpoint) so that iterations redone are not logged twice. Sets
        `resumed_at` (the checkpoint's step) and `evaluated_at` (the step of the last evaluation
        metrics.csv keeps; None if none)."""
        self.resumed_at = self.evaluated_at = None
        saved = self.saved()
        if saved is None:  # starting over: what an earlier start logged goes
            self.metrics.unlink(missing_ok=True)
            return None
        step = saved["global_step"]
        self.resumed_at = step
        if self.metrics.is_file():
            self._cut_metrics(step)
        return self.checkpoint

    def _cut_metrics(self, step: int) -> None:
        """Keep the rows of metrics.csv up to `step`, verbatim. A last row cut off mid-line (its
        writer was killed) is dropped whole, never kept as a value; any other row that is not a
        row of the log stops the run (CorruptMetricsError) rather than be kept or guessed at."""
        try:
            lines = self.metrics.read_text(encoding="utf-8").splitlines(keepends=True)
        except UnicodeDecodeError as e:
            raise CorruptMetricsError(
                f"{self.metrics} is not a metrics log ({e}). {_FIX}"
            ) from None
        if lines and not lines[-1].endswith("\n"):  # the writer ends every row with a newline
            log.warning(
                f"{self.metrics}: its last row was cut off mid-line: dropped ({lines[-1]!r})"
            )
            lines.pop()
        rows = list(csv.reader(lines))
        if not rows:  # nothing but a cut-off header: nothing was logged
            self.metrics.unlink()
            return
        if "step" not in rows[0]:
            raise CorruptMetricsError(f"{self.metrics} has no header with a 'step' column. {_FIX}")
        header, at = rows[0], rows[0].index("step")
        kept, last_eval = [header], None
        test = header.index("test_error") if "test_error" in header else None
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != len(header) or not _is_number(row[at]):
                raise CorruptMetricsError(
                    f"{self.metrics}, line {line}, is not a row of the log "
                    f"({','.join(row)!r}). {_FIX}"
                )
            if float(row[at]) <= step:
                kept.append(row)
                if test is not None and row[test] != "":
                    last_eval = float(row[at])
        self.evaluated_at = last_eval
        text = io.StringIO()  # the kept rows verbatim, with Lightning's line endings
        csv.writer(text).writerows(kept)
        atomic_write_text(self.metrics, text.getvalue())


_FIX = (
    "Delete that line, or the file to log this run from its checkpoint's step on only, or the "
    "run directory to train it over, then run the same command again."
)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class CorruptMetricsError(UserError, ValueError):
    """A run's metrics.csv holds something that is not a row of its log."""


# What Hydra and the lock put in a run directory before a run starts: a directory holding nothing
# else has no run in it.
BEFORE_START = {".hydra", LOCK}


def remove_unstarted(run_dir: str | os.PathLike, keep: str | os.PathLike | None = None) -> None:
    """Remove `run_dir` if it holds no run, only what Hydra made for it (its .hydra/, its job's
    log) and the lock; then its parents that are left empty, up to `keep` (excluded) if `run_dir`
    is below it. A directory holding anything of a run (run.json, a checkpoint, metrics.csv) is
    never touched: a setup error leaves nothing behind, and takes nothing away."""
    run_dir = Path(run_dir).absolute()
    if not run_dir.is_dir():
        return
    if any(p.name not in BEFORE_START and p.suffix != ".log" for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir)
    remove_empty_parents(run_dir, keep)


def remove_empty_parents(path: Path, keep: str | os.PathLike | None) -> None:
    """The parents of `path` that are empty, up to `keep` (excluded), if `path` is below it."""
    if keep is None or not path.is_relative_to(keep := Path(keep).absolute()):
        return
    for parent in path.parents:
        if parent == keep or not parent.is_relative_to(keep) or any(parent.iterdir()):
            return
        parent.rmdir()


def flat_config(d: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as {'a.b.c': value}."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
