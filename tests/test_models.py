"""The networks: the interface every arch's net offers, the paper's parameter counts, the depth
rule, what a shortcut buys, what a bottleneck saves."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import ROOT
from omegaconf import OmegaConf
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from depthsweep.errors import OptionError
from depthsweep.nets.models import (
    BasicBlock,
    Block,
    Bottleneck,
    InvalidDepthError,
    Net,
    PadShortcut,
    PlainBlock,
    PlainNet,
    ResidualBlock,
    ResNet,
    SideHeads,
    count_macs,
    count_params,
)
from depthsweep.training.build import build_model

ARCHS = sorted((ROOT / "conf" / "arch").glob("*.yaml"))

# He et al. 2016, Table 6 / public reproductions (option A shortcuts, so plain == resnet).
PAPER_PARAMS = {8: 75_290, 20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth", PAPER_PARAMS)
@pytest.mark.parametrize("net", [PlainNet, ResNet])
def test_parameter_counts_match_the_paper(net, depth):
    assert count_params(net(depth)) == PAPER_PARAMS[depth]


def test_plain_and_resnet_have_the_same_layers():
    plain, res = PlainNet(20).state_dict(), ResNet(20).state_dict()
    assert plain.keys() == res.keys()
    assert all(plain[k].shape == res[k].shape for k in plain)


@pytest.mark.parametrize(
    "depth, nearest", [(18, "14, 20"), (21, "20, 26"), (7, "8"), (-4, "8"), (0, "8")]
)
def test_invalid_depth_names_the_rule_and_nearest_depths(depth, nearest):
    with pytest.raises(InvalidDepthError, match=r"6n\+2") as err:
        ResNet(depth)
    assert f"Nearest valid depths: {nearest}." in str(err.value)


@pytest.mark.parametrize("depth", ["abc", 20.0, True])
def test_a_depth_that_is_not_an_integer_is_refused(depth):
    with pytest.raises(InvalidDepthError, match=f"depth={depth!r}: the number of layers"):
        ResNet(depth)


def test_forward_shapes_and_stage_resolutions():
    net = ResNet(14).eval()
    x = torch.randn(2, 3, 32, 32)
    maps = []
    for stage in (net.layer1, net.layer2, net.layer3):
        stage.register_forward_hook(lambda m, i, o: maps.append(tuple(o.shape[1:])))
    assert net(x).shape == (2, 10)
    assert maps == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


@pytest.mark.parametrize("net", [PlainNet, ResNet])
def test_width_scales_every_stage_and_the_cost_by_its_square(net):
    """arch.width=8: stem 8, stages 8/16/32 filters; params and MACs about a quarter (the
    BN and the classifier's bias scale linearly)."""
    narrow, paper = net(20, width=8), net(20)
    convs = [m.out_channels for m in narrow.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0] == 8 and sorted(set(convs)) == [8, 16, 32] and narrow.fc.in_features == 32
    assert count_params(paper) == PAPER_PARAMS[20]  # the default is the paper's 16
    assert 0.24 < count_params(narrow) / count_params(paper) < 0.26
    assert count_macs(narrow) == pytest.approx(count_macs(paper) / 4, rel=0.02)  # stem: 3 in


@pytest.mark.parametrize("width", [0, -8, 8.5, True])
def test_a_width_that_is_no_count_of_filters_is_refused(width):
    with pytest.raises(OptionError, match=f"arch.width={width!r}: the stem's filters"):
        ResNet(20, width=width)


def test_macs_scale_with_the_images_size():
    net = ResNet(20)
    assert count_macs(net, (3, 16, 16)) == pytest.approx(count_macs(net) / 4, rel=0.01)


def test_option_a_subsamples_and_zero_pads_without_parameters():
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(16, 32, stride=2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_option_b_projects_with_a_1x1_conv():
    a, b = ResNet(20, shortcut="A"), ResNet(20, shortcut="B")
    # two projections: 16->32 and 32->64, each 1x1 conv + BN (weight and bias)
    assert count_params(b) - count_params(a) == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    with pytest.raises(ValueError, match="arch.shortcut='C'"):
        ResNet(20, shortcut="C")


def test_convs_use_kaiming_fan_out_init():
    torch.manual_seed(0)
    conv = ResNet(56).layer3[0].conv2  # 64 -> 64, 3x3
    fan_out = 64 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)


@pytest.mark.parametrize("train_mode", [True, False])
def test_residual_block_with_zero_branch_weights_is_the_identity(train_mode):
    """Why depth should not hurt a ResNet: a residual block can fall back to the identity, so adding
    blocks should not hurt. With zero branch weights, relu(0 + x) = x for x >= 0."""
    block = BasicBlock(16, 16)
    for conv in (block.conv1, block.conv2):
        nn.init.zeros_(conv.weight)
    block.train(train_mode)
    x = torch.rand(4, 16, 8, 8)  # non-negative, like the ReLU outputs that feed a block
    assert torch.equal(block(x), x)
    # The plain block with the same weights loses the input entirely.
    plain = PlainBlock(16, 16).train(train_mode)
    plain.load_state_dict(block.state_dict(), strict=False)
    assert plain(x).abs().max() == 0


def test_zero_init_residual_makes_every_block_start_as_identity():
    net = ResNet(14, zero_init_residual=True).eval()
    x = torch.rand(2, 16, 32, 32)
    block = net.layer1[1]
    assert torch.equal(block(x), x)
    assert all(b.last_bn.weight.abs().sum() == 0 for b in net.blocks())
    # plain nets have no shortcut to fall back on: the option is not theirs
    with pytest.raises(TypeError, match="zero_init_residual"):
        PlainNet(14, zero_init_residual=True)
    assert not any(b.residual for b in PlainNet(14).blocks())
    assert all(b.residual for b in net.blocks())


def test_macs_come_from_the_flop_counter():
    # resnet-20: 40.55M multiply-adds for a 32x32 image, the figure usually quoted
    assert count_macs(ResNet(20)) == pytest.approx(40.55e6, rel=0.01)
    assert count_macs(ResNet(56)) > 2.5 * count_macs(ResNet(20))


@pytest.mark.parametrize("path", ARCHS, ids=[p.stem for p in ARCHS])
def test_every_arch_builds_a_net_with_the_interface_the_harness_relies_on(path):
    """Every conf/arch file: its arch node holds only the net's class and constructor options,
    and the net it builds (at its smallest valid depth) satisfies Net, its blocks Block."""
    arch_file = OmegaConf.load(path)
    assert arch_file.arch_name == path.stem and "_target_" in arch_file.arch
    assert set(arch_file) == {"arch_name", "arch", "schedule"}  # and the arch's warm-up
    for depth in range(3, 60):
        try:
            net = build_model(arch_file.arch, depth, num_classes=7)
            break
        except InvalidDepthError:
            continue
    assert isinstance(net, Net)
    assert isinstance(net.fc, nn.Linear) and net.fc.out_features == 7
    blocks = net.blocks()
    # fc comes after the stage of the last block: transfer learning fine-tunes that one
    children = list(dict(net.named_children()))
    names = {id(m): n for n, m in net.named_modules()}
    assert children.index("fc") > children.index(names[id(blocks[-1])].split(".")[0])
    assert blocks and all(isinstance(b, Block) for b in blocks)
    assert all(isinstance(b, ResidualBlock) for b in blocks if b.residual)
    x = torch.randn(2, 3, 32, 32)
    assert net.eval()(x).shape == (2, 7)
    out = net.train()(x)
    if isinstance(out, tuple):  # side heads, in training only
        assert isinstance(net, SideHeads) and out[0].shape == (2, 7)
    else:
        assert out.shape == (2, 7)


def test_the_interface_tells_residual_blocks_apart():
    assert not isinstance(PlainBlock(8, 8), ResidualBlock)
    assert isinstance(BasicBlock(8, 8), ResidualBlock) and isinstance(Bottleneck(32, 8), Block)
    assert not isinstance(nn.Linear(2, 2), Net)


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
    arch = OmegaConf.load(ROOT / "conf" / "arch" / "resnet_bottleneck.yaml").arch
    # 1,704,154: the often-quoted 1,703,258 is the pre-activation ResNet-164 (He et al. 2016b),
    # which has a final BN instead of the stem's and BN-free projections: 896 fewer.
    assert count_params(build_model(arch, 164)) == resnet164_params() == 1_704_154
    with pytest.raises(InvalidDepthError, match=r"9n\+2.*Nearest valid depths: 164, 173"):
        build_model(arch, 165)
