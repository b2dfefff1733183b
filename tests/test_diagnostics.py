"""Diagnostics on tiny models whose answers are known, the cost claims, and the CLI end to end."""

from __future__ import annotations

import math
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from helpers import ROOT, train_tiny
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from depthsweep import diagnostic_plots
from depthsweep.build import build_model
from depthsweep.callbacks import GradNormLogger, grad_norms
from depthsweep.diagnostics import (
    ShortcutOnly,
    diagnose,
    layer_responses,
    lesion_errors,
    lesioned,
)
from depthsweep.models import (
    BasicBlock,
    Bottleneck,
    BottleneckResNet,
    InvalidDepthError,
    PlainNet,
    ResNet,
    count_params,
)
from experiments import diagnose as diagnose_cli


def batches(n: int = 2, size: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 10, (size,), generator=g))
        for _ in range(n)
    ]


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --- the lesion stand-ins and identity at initialisation ----------------------------------------


@pytest.mark.parametrize("block", [BasicBlock(8, 8), Bottleneck(32, 8), BasicBlock(8, 16, 2)])
def test_block_with_zero_branch_weights_is_its_lesion(block):
    """relu(shortcut(x)), the stand-in for a deleted block, is what the block computes once its
    branch convs are zero; with an identity shortcut it is the identity on x >= 0."""
    x = torch.randn(2, block.conv1.in_channels, 8, 8).relu()
    block.eval()
    stand_in = ShortcutOnly(block.shortcut)
    assert not torch.equal(block(x), stand_in(x))  # the branch does contribute before zeroing
    for m in block.modules():
        if isinstance(m, nn.Conv2d) and m not in set(block.shortcut.modules()):
            nn.init.zeros_(m.weight)
    assert torch.equal(block(x), stand_in(x))
    if isinstance(block.shortcut, nn.Identity):
        assert torch.equal(block(x), x)


def test_lesion_of_a_zero_initialised_block_changes_nothing():
    torch.manual_seed(0)
    model, data = ResNet(14, zero_init_residual=True).eval(), batches()
    x = data[0][0]
    before = [(p, n) for n, p in model.named_modules()]
    with torch.no_grad():
        baseline = model(x)
        for k in range(len(model.blocks())):
            with lesioned(model, k):
                assert any(isinstance(m, ShortcutOnly) for m in model.modules())
                assert torch.equal(model(x), baseline)
    assert [(p, n) for n, p in model.named_modules()] == before  # every block swapped back
    errors = lesion_errors(model, data)
    assert len(errors) == 6 and errors["lesionable"].all()
    assert (errors["error"] == errors["baseline_error"]).all()

    trained_like = ResNet(14).eval()  # nonzero branches: deleting one does change the logits
    with torch.no_grad(), lesioned(trained_like, 3):
        assert not torch.allclose(trained_like(x), baseline)


def test_plain_lesions_skip_blocks_that_change_shape():
    model, data = PlainNet(14).eval(), batches()
    errors = lesion_errors(model, data)
    assert errors["name"].tolist() == [f"layer{s}.{i}" for s in (1, 2, 3) for i in (0, 1)]
    assert errors["lesionable"].tolist() == [True, True, False, True, False, True]
    assert errors.loc[~errors["lesionable"], "error"].isna().all()
    assert errors.loc[errors["lesionable"], "error"].between(0, 100).all()
    with torch.no_grad():  # the baseline is the unlesioned model's error, recomputed here
        wrong = sum((model(x).argmax(1) != y).sum().item() for x, y in data)
    assert errors["baseline_error"].iloc[0] == pytest.approx(100 * wrong / 16)
    assert hook_count(model) == 0


# --- gradient flow --------------------------------------------------------------------------------


def one_layer_net() -> nn.Module:
    net = nn.Module()
    net.conv = nn.Conv2d(3, 2, 3, bias=False)  # 2*3*3*3 = 54 weights
    net.unused = nn.Conv2d(2, 2, 1, bias=False)  # never run: no gradient, not reported
    return net


def test_grad_norms_of_a_one_layer_net_by_hand():
    net = one_layer_net()
    loss = 3 * net.conv(torch.ones(2, 3, 4, 4)).sum()
    loss.backward()
    # dL/dW[o,c,i,j] = 3 * sum over 2 images and the 2x2 output positions of x = 1: 3 * 8 = 24.
    assert grad_norms(net) == pytest.approx({"conv": 24 * math.sqrt(54)})


def test_grad_norm_logger_logs_at_init_and_every_n_iterations():
    net = one_layer_net()
    net.conv(torch.ones(1, 3, 3, 3)).sum().backward()
    logged = []
    logger = SimpleNamespace(log_metrics=lambda m, step: logged.append((step, m)))
    callback = GradNormLogger(every=3)
    for step in range(8):
        trainer = SimpleNamespace(global_step=step, logger=logger)
        callback.on_before_optimizer_step(trainer, SimpleNamespace(model=net), None)
    assert [s for s, _ in logged] == [0, 3, 6]
    assert logged[0][1] == {"grad_norm/conv": pytest.approx(math.sqrt(54))}
    with pytest.raises(ValueError):
        GradNormLogger(every=0)


# --- layer responses ------------------------------------------------------------------------------


def test_std_of_a_known_bn_output():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    nn.init.zeros_(conv.weight)
    conv.weight.data[0, 0, 1, 1] = 1.0  # the identity
    bn = nn.BatchNorm2d(1)
    bn.running_mean.fill_(0.5)
    bn.running_var.fill_(4.0)
    bn.weight.data.fill_(3.0)
    bn.bias.data.fill_(-1.0)
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1))
    data = [(torch.randn(4, 1, 5, 5) * 2 + 1, torch.zeros(4)) for _ in range(3)]
    resp = layer_responses(model, data)
    x = torch.cat([x for x, _ in data]).double()
    # Eval mode: BN uses its running statistics: the response is 3 * (x - 0.5) / sqrt(4 + eps) - 1,
    # computed in float32 (hence rel=1e-6).
    expected = (3 * x.std(correction=0) / math.sqrt(4 + bn.eps)).item()
    assert resp["name"].tolist() == ["0"]  # the 1x1 conv's BN is not a 3x3 layer's response
    assert resp["std"].iloc[0] == pytest.approx(expected, rel=1e-6)
    assert model.training and bn.running_mean.item() == 0.5  # mode restored, stats untouched


def test_layer_responses_in_forward_order_and_hooks_removed():
    model = BottleneckResNet(11, shortcut="B")
    resp = layer_responses(model, batches(1))
    assert resp["layer"].tolist() == [0, 1, 2, 3]
    assert resp["name"].tolist() == ["stem.0", "layer1.0.conv2", "layer2.0.conv2", "layer3.0.conv2"]
    assert (resp["std"] > 0).all()
    assert hook_count(model) == 0

    def failing():
        yield batches(1)[0]
        raise RuntimeError("data went away")

    with pytest.raises(RuntimeError, match="data went away"):
        layer_responses(model, failing())
    assert hook_count(model) == 0 and model.training


# --- cost -----------------------------------------------------------------------------------------


def macs(module: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.eval()(x)
    return counter.get_total_flops() // 2


def test_bottleneck_block_costs_less_than_two_3x3_convs_at_full_width():
    w = 16
    x = torch.zeros(1, 4 * w, 8, 8)
    bottleneck, basic = macs(Bottleneck(4 * w, w), x), macs(BasicBlock(4 * w, 4 * w), x)
    pixels = 8 * 8
    assert bottleneck == pixels * (4 * w * w + 9 * w * w + w * 4 * w)  # 1x1 in, 3x3, 1x1 out
    assert basic == pixels * 2 * 9 * (4 * w) ** 2
    assert bottleneck < basic / 16


def resnet164_params() -> int:
    """Our post-activation ResNet-164 with option-B shortcuts, counted from its layers:
    stem conv+BN; per block 1x1 (in->p), 3x3 (p->p), 1x1 (p->4p), each with BN; a 1x1 conv+BN
    projection on each stage's first block; fc 256->10."""
    total, in_planes = 3 * 16 * 9 + 2 * 16, 16
    for p in (16, 32, 64):
        for i in range(18):
            total += in_planes * p + 9 * p * p + p * 4 * p + 2 * (p + p + 4 * p)
            if i == 0:
                total += in_planes * 4 * p + 2 * 4 * p
            in_planes = 4 * p
    return total + 256 * 10 + 10


def test_resnet164_parameter_count_and_depth_rule():
    arch = OmegaConf.load(ROOT / "conf" / "arch" / "resnet_bottleneck.yaml")
    # 1,704,154: the often-quoted 1,703,258 is the pre-activation ResNet-164 (He et al. 2016b),
    # which has a final BN instead of the stem's and BN-free projections: 896 fewer.
    assert count_params(build_model(arch, 164)) == resnet164_params() == 1_704_154
    with pytest.raises(InvalidDepthError, match=r"9n\+2.*Nearest valid depths: 164, 173"):
        build_model(arch, 165)


# --- end to end -----------------------------------------------------------------------------------


def test_cli_on_a_tiny_real_sweep(fake_cifar, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    train_tiny(sweep / "plain-8", fake_cifar, "arch=plain", "depth=8")
    train_tiny(sweep / "resnet-8", fake_cifar, "arch=resnet", "depth=8")
    train_tiny(
        sweep / "resnet-8-zi", fake_cifar, "arch=resnet", "depth=8", "arch.zero_init_residual=true"
    )
    moved = tmp_path / "moved"
    shutil.move(fake_cifar, moved)  # the data moved since training: data.root= finds it

    capsys.readouterr()
    assert diagnose_cli.main([str(sweep), "--data-root", str(moved), "--limit", "16"]) == 0
    stdout = capsys.readouterr().out
    names = [
        f"{n}.{ext}"
        for n in ("grad_flow", "layer_responses", "lesion")
        for ext in ("csv", "png", "svg")
    ]
    names += ["zero_init.png", "zero_init.svg"]
    assert sorted(stdout.split()[1::2]) == sorted(str(sweep / n) for n in names)
    assert all((sweep / n).stat().st_size > 0 for n in names)
    assert not list(sweep.glob(".*.tmp"))

    grads = pd.read_csv(sweep / "grad_flow.csv")
    assert sorted(grads["step"].unique()) == [1, 3]  # global steps 0 (initialisation) and 2
    first = grads[grads["step"] == 1].sort_values(["run", "layer"])
    assert first.groupby("run")["layer"].apply(list).tolist() == [list(range(7))] * 3
    assert first["name"].iloc[:2].tolist() == ["stem.0", "layer1.0.conv1"]
    # Zero-initialised branches pass no gradient to their convs at first (d/dW is scaled by the
    # zero BN gamma); the stem, and every conv of the default runs, do get one.
    zero_at_init = (grads["variant"] == "resnet+zero_init") & (grads["step"] == 1)
    zero_at_init &= grads["name"] != "stem.0"
    assert (grads.loc[zero_at_init, "grad_norm"] == 0).all() and zero_at_init.sum() == 6
    assert (grads.loc[~zero_at_init, "grad_norm"] > 0).all()

    les = pd.read_csv(sweep / "lesion.csv")
    assert les.groupby("variant")["lesionable"].sum().to_dict() == {
        "plain": 1, "resnet": 3, "resnet+zero_init": 3}  # fmt: skip
    resp = pd.read_csv(sweep / "layer_responses.csv")
    assert resp.groupby("run").size().tolist() == [7, 7, 7]
    # Layers and blocks are counted: integer ticks only; the intact nets' lines are in the legend.
    for fig in (diagnostic_plots.layer_responses(resp), diagnostic_plots.lesion(les)):
        for ax in fig.axes:
            ax.figure.canvas.draw()
            assert all(float(t).is_integer() for t in ax.get_xticks()), ax.get_xticks()
    legend = diagnostic_plots.lesion(les).axes[0].get_legend().get_texts()
    assert "no block deleted" in [t.get_text() for t in legend]

    # A diagnostic whose inputs are missing is skipped with a message, not a crash.
    lone = tmp_path / "lone"
    shutil.copytree(sweep / "resnet-8", lone)
    metrics = pd.read_csv(lone / "metrics.csv")
    metrics.drop(columns=[c for c in metrics if c.startswith("grad_norm/")]).to_csv(
        lone / "metrics.csv", index=False
    )
    assert diagnose(lone, what=("grad", "zero_init")) == []
    out = capsys.readouterr().out
    assert "grad: no grad_norm/* columns" in out and "zero_init: no (arch, depth)" in out
