"""Diagnostics on tiny models whose answers are known, and the CLI end to end."""

from __future__ import annotations

import math
import shutil

import pandas as pd
import pytest
import torch
from helpers import train_tiny
from torch import nn

from depthsweep.analysis import diagnostic_plots
from depthsweep.analysis.diagnostics import (
    ShortcutOnly,
    diagnose,
    layer_responses,
    lesion_errors,
    lesioned,
)
from depthsweep.nets.models import (
    BasicBlock,
    Bottleneck,
    BottleneckResNet,
    PlainNet,
    ResNet,
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
    # Grouped as the summaries group them: by the option that tells the resnets apart.
    zero = "resnet (arch.zero_init_residual=True)"
    zero_at_init = (grads["variant"] == zero) & (grads["step"] == 1)
    zero_at_init &= grads["name"] != "stem.0"
    assert (grads.loc[zero_at_init, "grad_norm"] == 0).all() and zero_at_init.sum() == 6
    assert (grads.loc[~zero_at_init, "grad_norm"] > 0).all()

    les = pd.read_csv(sweep / "lesion.csv")
    assert les.groupby("variant")["lesionable"].sum().to_dict() == {
        "plain": 1, "resnet (arch.zero_init_residual=False)": 3, zero: 3}  # fmt: skip
    resp = pd.read_csv(sweep / "layer_responses.csv")
    assert resp.groupby("run").size().tolist() == [7, 7, 7]
    # Layers and blocks are counted: integer ticks only; the intact nets' lines are in the legend.
    for fig in (diagnostic_plots.layer_responses(resp), diagnostic_plots.lesion(les)):
        for ax in fig.axes:
            ax.figure.canvas.draw()
            assert all(float(t).is_integer() for t in ax.get_xticks()), ax.get_xticks()
    legend = diagnostic_plots.lesion(les).axes[0].get_legend().get_texts()
    assert "no block deleted" in [t.get_text() for t in legend]

    # The data moved, no --data-root: the runs are skipped, saying how to point at the data.
    assert diagnose(sweep, what=("responses",), limit=16) == []
    assert (
        "no CIFAR-10 at the data.root its config.yaml records (" in (out := capsys.readouterr().out)
        and "experiments.diagnose --data-root DIR, or DEPTHSWEEP_DATA_ROOT=DIR" in out
    )

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

    # A run without its config.yaml (its options unknown) is diagnosed all the same, and takes
    # no side in the zero-init comparison: resnet-8-zi is left with no known counterpart.
    bare = tmp_path / "bare"
    shutil.copytree(sweep, bare)
    (bare / "resnet-8" / "config.yaml").unlink()
    assert bare / "grad_flow.csv" in diagnose(bare, what=("grad", "zero_init"))
    assert "zero_init: no (arch, depth)" in capsys.readouterr().out
    grads = pd.read_csv(bare / "grad_flow.csv")
    assert sorted(grads["run"].unique()) == ["plain-8", "resnet-8", "resnet-8-zi"]


def test_cli_refuses_no_test_images_before_writing_anything(fake_cifar, tmp_path, capsys):
    """--limit 0 used to fail in the data module after the gradient-flow files were written."""
    sweep = tmp_path / "sweep"
    train_tiny(sweep / "resnet-8", fake_cifar, "arch=resnet", "depth=8")
    capsys.readouterr()  # training's output
    assert diagnose_cli.main([str(sweep), "--limit", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: --limit=0: must be an integer >= 1")
    assert err.count("\n") == 1
    assert [p.name for p in sweep.iterdir()] == ["resnet-8"]
