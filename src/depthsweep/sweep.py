"""Sweep bookkeeping: each run directory says what it is and how far it got.

`run.json` holds the run's identity, size and status (running, done, failed). A finished run with
the same config is skipped; an unfinished one resumes from `checkpoints/last.ckpt`. A finished or
started run whose config differs is refused rather than mixed with new results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from depthsweep.files import atomic_write_text

# Where the data lives, how the run is displayed and what extra it logs do not change its result.
VOLATILE_KEYS = (
    "data.root",
    "data.download",
    "trainer.enable_progress_bar",
    "diagnostics.grad_norm_every",
)


class ConfigMismatchError(RuntimeError):
    """The run directory holds a run of a different configuration."""


def identity(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus the keys that do not change the result."""
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("hydra", None)
    for key in VOLATILE_KEYS:
        *parents, leaf = key.split(".")
        node = c
        for p in parents:
            node = node.get(p, {})
        node.pop(leaf, None)
    return c


class RunRecord:
    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        self.json = self.dir / "run.json"
        self.config = self.dir / "config.yaml"
        self.checkpoint = self.dir / "checkpoints" / "last.ckpt"
        self.metrics = self.dir / "metrics.csv"

    def read(self) -> dict[str, Any]:
        return json.loads(self.json.read_text()) if self.json.is_file() else {}

    @property
    def status(self) -> str | None:
        return self.read().get("status")

    def check_config(self, cfg: DictConfig) -> None:
        """Refuse to reuse a directory that holds a run of another configuration."""
        if not self.config.is_file():
            return
        old, new = _flat(identity(OmegaConf.load(self.config))), _flat(identity(cfg))
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
        """The checkpoint to resume from, with metrics.csv cut back to the checkpoint's step so
        that iterations redone after the resume are not logged twice."""
        if not self.checkpoint.is_file():
            return None
        step = torch.load(self.checkpoint, map_location="cpu", weights_only=False)["global_step"]
        if self.metrics.is_file():
            df = pd.read_csv(self.metrics)
            atomic_write_text(self.metrics, df[df["step"] <= step].to_csv(index=False))
        return self.checkpoint


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
