"""Why residual networks train, measured: gradient flow per conv layer, layer responses (He et al.
2016, Fig. 7), lesions of single blocks (Veit et al. 2016), and identity-at-init training curves.

The measurements are pure functions of a model and a few batches; `diagnose` applies them to every
finished run of a sweep and writes CSVs and figures beside it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from depthsweep.analysis import diagnostic_plots
from depthsweep.analysis.plots import save_figure
from depthsweep.apps import zoo
from depthsweep.files import atomic_write_text
from depthsweep.runs.metrics import read_metrics
from depthsweep.runs.rundir import CONFIG, GRAD_PREFIX, read_config, read_info
from depthsweep.runs.sweep import NoRunsError, runs_table
from depthsweep.training.config import device_for
from depthsweep.training.data import DatasetMissingError

Batches = Iterable[tuple[Tensor, Tensor]]
DIAGNOSTICS = ("grad", "responses", "lesion", "zero_init")


@contextlib.contextmanager
def _eval_no_grad(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, nn.BatchNorm2d]]:
    """(3x3 conv name, the BN that normalises it): each conv is paired with the next BN
    registered after it, which is how every block, the stem and the shortcuts are written."""
    pairs, conv = [], None
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            conv = (name, m)
        elif isinstance(m, nn.BatchNorm2d) and conv is not None:
            if conv[1].kernel_size == (3, 3):
                pairs.append((conv[0], m))
            conv = None
    return pairs


def layer_responses(model: nn.Module, batches: Batches) -> pd.DataFrame:
    """Std of each 3x3 conv layer's response (after its BN, before the ReLU or the addition) over
    all elements of all images in `batches`; rows in forward order (columns layer, name, std)."""
    dev = _device(model)
    sums: dict[str, Tensor] = {}  # name -> [count, sum, sum of squares], float64, on the device
    order: list[str] = []  # the order in which the hooks fire is the forward order

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
            x = out.detach().double()
            if name not in sums:
                order.append(name)
                sums[name] = torch.zeros(3, dtype=torch.float64, device=dev)
            sums[name] += torch.stack([x.new_tensor(x.numel()), x.sum(), x.square().sum()])

        return record

    handles = [bn.register_forward_hook(hook(name)) for name, bn in _conv_bn_pairs(model)]
    try:
        with _eval_no_grad(model):
            for x, _ in batches:
                model(x.to(dev))
    finally:
        for h in handles:
            h.remove()
    if not order:
        return pd.DataFrame(columns=["layer", "name", "std"])
    n, s, ss = torch.stack([sums[k] for k in order]).T.cpu()  # the one host transfer
    std = ((ss / n - (s / n) ** 2).clamp(min=0)).sqrt()  # population std
    return pd.DataFrame({"layer": range(len(order)), "name": order, "std": std.tolist()})


class ShortcutOnly(nn.Module):
    """A residual block with its branch deleted: relu(shortcut(x))."""

    def __init__(self, shortcut: nn.Module) -> None:
        super().__init__()
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.shortcut(x))


def _block_slots(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(parent module, attribute name) of each of `model.blocks()`, input to output."""
    names = {id(m): n for n, m in model.named_modules()}
    slots = []
    for b in model.blocks():
        parent, _, attr = names[id(b)].rpartition(".")
        slots.append((model.get_submodule(parent), attr))
    return slots


@contextlib.contextmanager
def lesioned(model: nn.Module, index: int) -> Iterator[nn.Module]:
    """`model` with block `index` deleted: a residual block keeps only its shortcut, a plain one
    becomes the identity (only valid where its input and output shapes match)."""
    parent, attr = _block_slots(model)[index]
    block = parent.get_submodule(attr)
    stand_in = ShortcutOnly(block.shortcut) if block.residual else nn.Identity()
    setattr(parent, attr, stand_in)
    try:
        yield model
    finally:
        setattr(parent, attr, block)


def _error(model: nn.Module, batches: Sequence[tuple[Tensor, Tensor]]) -> float:
    dev = _device(model)
    wrong = torch.zeros((), device=dev)
    for x, y in batches:
        wrong += (model(x.to(dev)).argmax(1) != y.to(dev)).sum()
    return 100 * wrong.item() / sum(len(y) for _, y in batches)


def lesion_errors(model: nn.Module, batches: Batches) -> pd.DataFrame:
    """Test error (%) with each block deleted in turn: columns block, name, error, baseline_error,
    lesionable. A plain block that changes shape cannot be deleted: error NaN, lesionable False."""
    batches = list(batches)
    names = {id(m): n for n, m in model.named_modules()}
    blocks = model.blocks()
    keeps_shape: dict[int, bool] = {}  # block index -> output shape == input shape

    def record(k: int):
        # Returns None: a forward hook that returned a value would replace the block's output.
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> None:
            keeps_shape.setdefault(k, inputs[0].shape == out.shape)

        return hook

    handles = [b.register_forward_hook(record(k)) for k, b in enumerate(blocks)]
    try:
        with _eval_no_grad(model):
            baseline = _error(model, batches)
    finally:
        for h in handles:
            h.remove()
    rows = []
    for k, b in enumerate(blocks):
        ok = b.residual or keeps_shape[k]
        error = float("nan")
        if ok:
            with lesioned(model, k), _eval_no_grad(model):
                error = _error(model, batches)
        rows.append((k, names[id(b)], error, baseline, ok))
    return pd.DataFrame(rows, columns=["block", "name", "error", "baseline_error", "lesionable"])


# --- applying the measurements to a sweep -----------------------------------------------------

IDENTITY = ["run", "arch", "variant", "depth", "seed", "zero_init", "status"]


def run_identities(path: str | os.PathLike) -> pd.DataFrame:
    """The runs under `path` (a sweep or one run directory), one row each, in the variants the
    summaries group them by (`runs.sweep.runs_table`): IDENTITY (`run`: its directory's name;
    `zero_init`: arch.zero_init_residual) and `dir`."""
    path = Path(path)
    runs = runs_table(path)
    runs["dir"] = [path / d for d in runs["run_dir"]]
    runs["run"] = [d.name for d in runs["dir"]]
    runs["zero_init"] = [_zero_init(d) for d in runs["dir"]]
    return runs[[*IDENTITY, "dir"]]


def _zero_init(run_dir: Path) -> bool | None:
    """arch.zero_init_residual as the run's config.yaml has it; None (unknown) without one."""
    if not (run_dir / CONFIG).is_file():
        return None
    return bool(read_config(run_dir).arch.get("zero_init_residual", False))


def _identity(run) -> dict:
    return {key: getattr(run, key) for key in IDENTITY}


def eval_batches(
    data: DictConfig, root: str | None = None, limit: int | None = None
) -> list[tuple[Tensor, Tensor]]:
    """The normalised test set of a run's `cfg.data`, through the data module's own code."""
    overrides = {"download": False}
    if root is not None:
        overrides["root"] = root
    if limit is not None:
        overrides["limit"] = limit
    dm = instantiate(data, **overrides, _convert_="all")
    dm.setup("validate")
    return [dm.on_after_batch_transfer(b, 0) for b in dm.val_dataloader()[0]]


def grad_flow_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Long table of logged gradient norms: one row per (run, step, conv layer in forward order),
    for the runs of `run_identities` that logged them."""
    frames = []
    for run in runs.itertuples():
        m = read_metrics(run.dir)
        cols = [c for c in m.columns if c.startswith(GRAD_PREFIX)] if m is not None else []
        if not cols:
            continue
        # metrics.csv sorts its columns by name (layer10 before layer2): training recorded the
        # conv layers' forward order in run.json.
        convs = read_info(run.dir).get("conv_layers")
        if convs is None:
            print(f"grad: skipping {run.run}: its run.json predates records of the layer order")
            continue
        layer = {n: i for i, n in enumerate(convs)}
        long = m[["step", *cols]].melt("step", var_name="name", value_name="grad_norm").dropna()
        long["name"] = long["name"].str.removeprefix(GRAD_PREFIX)
        frames.append(long.assign(layer=long["name"].map(layer), **_identity(run)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def training_curves(runs: pd.DataFrame) -> pd.DataFrame:
    """train_error and test_error by step for every run with metrics, plus the run's identity."""
    frames = []
    for run in runs.itertuples():
        m = read_metrics(run.dir)
        if m is None:
            continue
        cols = [c for c in ("train_error", "test_error") if c in m.columns]
        curve = m.groupby("step")[cols].mean().reset_index()  # sparse rows -> one per step
        frames.append(curve.assign(**_identity(run)))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def model_tables(
    runs: pd.DataFrame, what: Sequence[str], data_root: str | None, limit: int | None
) -> dict[str, pd.DataFrame]:
    """layer_responses and lesion_errors of every finished run with a checkpoint, each with the
    run's identity."""
    device = device_for()
    measures = {"responses": layer_responses, "lesion": lesion_errors}
    frames: dict[str, list[pd.DataFrame]] = {k: [] for k in measures if k in what}
    if not frames:
        return {}
    data_cache: dict[str, list[tuple[Tensor, Tensor]]] = {}  # runs of a sweep share their data
    for run in runs.itertuples():
        if not zoo.is_model(run.dir):
            print(f"skipping {run.run}: not a finished run with a checkpoint (status {run.status})")
            continue
        data = read_config(run.dir).data
        key = OmegaConf.to_yaml(data) + f"{data_root}{limit}"
        if key not in data_cache:
            try:
                batches = eval_batches(data, data_root, limit)
            except DatasetMissingError as e:  # its message names data.root=, a run's option
                where = "the data.root its config.yaml records" if data_root is None else data_root
                print(
                    f"skipping {run.run}: no CIFAR-10 at {where} ({e}). Point the diagnostics at "
                    "it: experiments.diagnose --data-root DIR, or DEPTHSWEEP_DATA_ROOT=DIR for "
                    "the notebook"
                )
                continue
            data_cache[key] = [(x.to(device), y.to(device)) for x, y in batches]
        model = zoo.load(run.dir, device).model
        for k in frames:
            frames[k].append(measures[k](model, data_cache[key]).assign(**_identity(run)))
    return {k: pd.concat(v, ignore_index=True) for k, v in frames.items() if v}


def diagnose(
    path: str | os.PathLike,
    what: Sequence[str] = DIAGNOSTICS,
    data_root: str | None = None,
    limit: int | None = None,
    grad_steps: Sequence[str | int] = ("first", "last"),
) -> list[Path]:
    """Run the diagnostics in `what` on the runs under `path` (a sweep or a single run dir); write
    CSVs and figures into `path`. `data_root` replaces the runs' data.root, `limit` keeps the first
    N test images, `grad_steps` are the iterations the gradient-flow figure shows ('first', 'last'
    or numbers). Returns the files written; a diagnostic whose inputs are missing is skipped."""
    unknown = set(what) - set(DIAGNOSTICS)
    if unknown:
        raise ValueError(
            f"unknown diagnostics {sorted(unknown)}: choose from {', '.join(DIAGNOSTICS)}"
        )
    out = Path(path)
    try:
        runs = run_identities(out)
    except NoRunsError as e:
        print(f"{e}: nothing to diagnose")
        return []
    written: list[Path] = []

    def write_csv(df: pd.DataFrame, name: str) -> None:
        atomic_write_text(out / name, df.to_csv(index=False))
        written.append(out / name)

    if "grad" in what:
        grads = grad_flow_table(runs)
        if grads.empty:
            print(
                "grad: no grad_norm/* columns in any metrics.csv (train with grad norm logging "
                "on, e.g. diagnostics.grad_norm_every=100): skipped"
            )
        else:
            write_csv(grads, "grad_flow.csv")
            written += save_figure(diagnostic_plots.grad_flow(grads, grad_steps), out / "grad_flow")
    tables = model_tables(runs, what, data_root, limit)
    for key, name, figure in (
        ("responses", "layer_responses", diagnostic_plots.layer_responses),
        ("lesion", "lesion", diagnostic_plots.lesion),
    ):
        if key not in what:
            continue
        if key not in tables:
            print(f"{key}: no finished run with a checkpoint and its data: skipped")
            continue
        write_csv(tables[key], f"{name}.csv")
        written += save_figure(figure(tables[key]), out / name)
    if "zero_init" in what:
        curves = training_curves(runs)
        pairs = curves.groupby(["arch", "depth"])["zero_init"].nunique() if len(curves) else []
        if not any(n == 2 for n in pairs):
            print(
                "zero_init: no (arch, depth) has runs both with and without "
                "arch.zero_init_residual=true: skipped"
            )
        else:
            written += save_figure(diagnostic_plots.zero_init(curves), out / "zero_init")
    return written
