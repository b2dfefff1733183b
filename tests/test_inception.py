"""arch=inception: the module's shapes, the issue's cost of a 5x5 conv with and without a 1x1
reduction (through the harness's own counter), the depth rule, and side heads that count only in
training."""

from __future__ import annotations

import functools

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from helpers import ROOT, train_tiny
from omegaconf import OmegaConf
from pytorch_lightning.loggers import CSVLogger
from torch import nn

from depthsweep.analysis.diagnostics import lesion_errors
from depthsweep.analysis.report import analyze
from depthsweep.errors import OptionError
from depthsweep.nets.inception import Inception, InceptionNet
from depthsweep.nets.models import InvalidDepthError, ResNet, count_macs, count_params
from depthsweep.runs.rundir import read_info
from depthsweep.training.build import build_model
from depthsweep.training.graphed import GraphedClassifier
from depthsweep.training.module import Classifier
from depthsweep.training.schedule import PaperLR
from depthsweep.training.window import TrainingWindow

ARCH = ROOT / "conf" / "arch" / "inception.yaml"
MAP = (192, 28, 28)  # the issue's worked example: 28x28x192 in
MODULE_3A = (192, 64, 96, 128, 16, 32, 32)  # GoogLeNet's 3a: 64 + 128 + 32 + 32 = 256 out


def error(logits: torch.Tensor, y: torch.Tensor) -> float:
    return ((logits.argmax(1) != y).float().mean() * 100).item()


# --- the module and its cost ----------------------------------------------------------------------


@pytest.mark.parametrize("reduce", [True, False])
def test_module_maps_28x28x192_to_28x28x256_branches_in_order(reduce):
    module = Inception(*MODULE_3A, reduce=reduce).eval()
    x = torch.randn(2, *MAP)
    out = module(x)
    assert out.shape == (2, 256, 28, 28)
    with torch.no_grad():
        parts = [module.branch1(x), module.branch3(x), module.branch5(x), module.branch_pool(x)]
    assert [p.shape[1] for p in parts] == [64, 128, 32, 32]
    assert torch.equal(out, torch.cat(parts, 1))


def test_the_issues_5x5_costs_through_the_harness_counter():
    """A 5x5 "same" conv from 28x28x192 to 28x28x32, directly and after a 1x1 reduction to 16: the
    5x5 branch of the real module, counted by count_macs (BN and ReLU cost no multiplies)."""
    direct = Inception(*MODULE_3A, reduce=False).branch5
    reduced = Inception(*MODULE_3A, reduce=True).branch5
    assert count_macs(direct, MAP) == 120_422_400
    assert count_macs(reduced, MAP) == 12_443_648


def test_module_cost_is_the_sum_of_its_convs():
    pixels = 28 * 28
    reduced = 192 * 64 + (192 * 96 + 9 * 96 * 128) + (192 * 16 + 25 * 16 * 32) + 192 * 32
    direct = 192 * 64 + 9 * 192 * 128 + 25 * 192 * 32 + 192 * 32  # the pool branch keeps its 1x1
    assert count_macs(Inception(*MODULE_3A, reduce=True), MAP) == pixels * reduced
    assert count_macs(Inception(*MODULE_3A, reduce=False), MAP) == pixels * direct


def test_without_reductions_the_same_net_convolves_the_inputs_and_costs_more():
    full, bare = InceptionNet(8, reduce=True), InceptionNet(8, reduce=False)
    assert count_macs(bare) > 2 * count_macs(full)  # 68.9M against 32.3M multiply-adds
    assert count_params(bare) > count_params(full)
    for module in bare.blocks():
        ins = module.branch1[0].in_channels
        for branch in (module.branch3, module.branch5):
            (conv,) = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
            assert conv.in_channels == ins and conv.kernel_size[0] in (3, 5)
        assert module.branch_pool[1][0].kernel_size == (1, 1)  # pool projection kept


# --- the net and its depth rule -------------------------------------------------------------------


def test_stages_resolutions_and_widths():
    net = InceptionNet(14).eval()
    maps = []
    for stage in (net.layer1, net.layer2, net.layer3):
        stage.register_forward_hook(lambda m, i, o: maps.append(tuple(o.shape[1:])))
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert maps == [(64, 32, 32), (128, 16, 16), (256, 8, 8)]


@pytest.mark.parametrize("depth, n", [(8, 1), (14, 2), (20, 3)])
def test_depth_is_6n_plus_2_with_n_modules_per_stage(depth, n):
    net = build_model(
        OmegaConf.load(ARCH).arch, depth
    )  # through the config file, as a run builds it
    assert isinstance(net, InceptionNet) and net.depth == depth
    assert len(net.blocks()) == 3 * n
    # each module is 2 weighted layers deep on its longest path (1x1 reduce, then 3x3 or 5x5)
    for module in net.blocks():
        branches = (module.branch1, module.branch3, module.branch5, module.branch_pool)
        deepest = max(sum(isinstance(m, nn.Conv2d) for m in b.modules()) for b in branches)
        assert deepest == Inception.layers == 2


@pytest.mark.parametrize(
    "depth, reduce, params, macs",
    [
        (8, True, 204_274, 32_279_040),
        (14, True, 437_402, 66_193_920),
        (20, True, 670_530, 100_108_800),
        (8, False, 365_770, 68_880_896),
    ],
)
def test_the_costs_the_readme_gives(depth, reduce, params, macs):
    """The README's *Inception* numbers, counted as a run counts them (run.json's params, macs)."""
    net = InceptionNet(depth, reduce=reduce)
    assert (count_params(net), count_macs(net)) == (params, macs)


@pytest.mark.parametrize(
    "depth, nearest", [(-4, "8"), (0, "8"), (7, "8"), (9, "8, 14"), (15, "14, 20")]
)
def test_invalid_depth_names_the_rule_and_nearest_depths(depth, nearest):
    with pytest.raises(InvalidDepthError, match=r"6n\+2.*Inception modules") as err:
        build_model(OmegaConf.load(ARCH).arch, depth)
    assert f"Nearest valid depths: {nearest}." in str(err.value)


def test_depths_below_the_smallest_name_it_for_every_arch():
    with pytest.raises(InvalidDepthError, match=r"Nearest valid depths: 8\.$"):
        ResNet(-4)


# --- side heads -----------------------------------------------------------------------------------


def aux_head_params(in_planes: int) -> int:
    """avg-pool; 1x1 conv to 32 + BN (weight, bias); linear from 32 x 4 x 4 to 10 classes."""
    return in_planes * 32 + 2 * 32 + 32 * 16 * 10 + 10


def test_side_heads_only_with_a_weight_and_only_in_training():
    x = torch.randn(4, 3, 32, 32)
    plain = InceptionNet(8)
    assert len(plain.aux_heads) == 0 and isinstance(plain.train()(x), torch.Tensor)
    with pytest.raises(OptionError, match="arch.aux_weight=-1"):
        InceptionNet(8, aux_weight=-1)

    net = InceptionNet(8, aux_weight=0.3)
    main, side = net.train()(x)
    assert main.shape == (4, 10) and [s.shape for s in side] == [(4, 10), (4, 10)]
    # heads on stage 1 (64 channels) and stage 2 (128); inference never runs them
    assert count_params(net) - count_params(plain) == aux_head_params(64) + aux_head_params(128)
    assert count_macs(net) == count_macs(plain)
    # In eval mode the output is the main logits, whatever the side heads hold: the same as a net
    # without them and with the same other weights.
    missing, unexpected = plain.load_state_dict(net.state_dict(), strict=False)
    assert not missing and all(k.startswith("aux_heads.") for k in unexpected)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), plain.eval()(x))


def test_loss_adds_weighted_side_losses_in_training_and_error_is_the_main_heads():
    torch.manual_seed(1)
    weight = 0.3
    module = Classifier(InceptionNet(8, aux_weight=weight))
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    loss, err = module.loss_and_error((x, y))
    with torch.no_grad():  # train-mode BN normalises by the batch: the same logits again
        main, side = module.model(x)
    assert error(side[0], y) != error(main, y)  # so taking the wrong head would show
    expected = F.cross_entropy(main, y) + weight * sum(F.cross_entropy(s, y) for s in side)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert err.item() == error(main, y)

    module.eval()
    loss, err = module.loss_and_error((x, y))
    with torch.no_grad():
        logits = module.model(x)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    assert err.item() == error(logits, y)


class MainAndSideErrors(pl.Callback):
    """Each step's main and first side head error, from the weights the step is about to use."""

    def __init__(self) -> None:
        self.main: list[float] = []
        self.side: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        x, y = batch
        with torch.no_grad():
            main, side = pl_module(x)  # train mode: BN uses the batch's statistics, as the step
        self.main.append(error(main, y))
        self.side.append(error(side[0], y))


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_lightning_trains_with_side_heads_and_logs_the_main_heads_error(cuda_graph, tmp_path):
    """With a one-step window every logged train_error is one step's error: the main head's.
    cuda_graph=true runs the graphed step's code path (eagerly on a CPU), with channels-last."""
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(96, 3, 32, 32), torch.randint(0, 10, (96,)))
    loader = torch.utils.data.DataLoader(data, batch_size=16, shuffle=True, drop_last=True)
    model = InceptionNet(8, aux_weight=0.5)
    cls = GraphedClassifier if cuda_graph else Classifier
    sgd = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)
    module = cls(model, sgd, functools.partial(PaperLR, iterations=6), channels_last=True)
    errors = MainAndSideErrors()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=6,
        log_every_n_steps=1,
        logger=CSVLogger(tmp_path),
        callbacks=[TrainingWindow(), errors],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    before = [p.detach().clone() for p in model.aux_heads.parameters()]
    trainer.fit(module, loader)
    assert trainer.global_step == 6
    logged = pd.read_csv(f"{trainer.logger.log_dir}/metrics.csv")["train_error"].dropna()
    assert logged.tolist() == pytest.approx(errors.main, abs=1e-4)
    assert errors.side != errors.main
    # the side losses reached the side heads' weights
    after = list(model.aux_heads.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(after, before, strict=True))


# --- through the harness --------------------------------------------------------------------------


def test_reduce_sweep_records_cost_and_error_per_run(fake_cifar, tmp_path):
    """What `-m arch=inception arch.reduce=true,false` records: each run's own params, MACs and
    errors in run.json and summary.csv, side heads included in training."""
    sweep = tmp_path / "sweep"
    for reduce in ("true", "false"):
        overrides = ["arch=inception", "depth=8", f"arch.reduce={reduce}", "arch.aux_weight=0.3"]
        train_tiny(sweep / f"arch.reduce={reduce}", fake_cifar, *overrides)
    summary = analyze(sweep).set_index("run_dir")
    runs = {r: summary.loc[f"arch.reduce={r}"] for r in ("true", "false")}
    for reduce, row in runs.items():
        net = InceptionNet(8, reduce=reduce == "true", aux_weight=0.3)
        assert (row.arch, row.depth, row.status, row.iterations) == ("inception", 8, "done", 4)
        assert (row.params, row.macs) == (count_params(net), count_macs(net))
        logged = pd.read_csv(sweep / f"arch.reduce={reduce}" / "metrics.csv")
        assert row.final_test_error == logged["test_error"].dropna().iloc[-1]  # the last eval's
        assert read_info(sweep / f"arch.reduce={reduce}")["macs"] == row.macs
    assert runs["false"].macs > runs["true"].macs


def test_lesions_delete_the_modules_that_keep_their_shape():
    torch.manual_seed(0)
    net = InceptionNet(14).eval()
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))) for _ in range(2)]
    lesions = lesion_errors(net, batches)
    names = ["layer1.0", "layer1.1", "layer2.1", "layer2.2", "layer3.1", "layer3.2"]
    assert lesions["name"].tolist() == names  # layer2.0 and layer3.0 are the max-pools
    # stage 1 keeps 64 channels; the first module of stages 2 and 3 widens them
    assert lesions["lesionable"].tolist() == [True, True, False, True, False, True]
