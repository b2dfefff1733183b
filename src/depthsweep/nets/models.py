"""The CIFAR-10 networks of He et al. 2016, §4.2, plain and residual, and the interface every
architecture's net offers.

Plain and residual nets have identical layers. The whole difference is one line:
`BasicBlock.forward` adds `self.shortcut(x)` before the final ReLU; `PlainBlock.forward` does not.

An architecture is a class whose nets satisfy `Net`, built with `depth` and `num_classes`, plus one
file in `conf/arch/`. The plain and residual nets are `CifarNet`s (a stem, three stages of blocks,
pooling, a linear classifier) that differ in their block class; `inception.InceptionNet` is a `Net`
of its own, with Inception modules for blocks.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from depthsweep.errors import OptionError


@runtime_checkable
class Block(Protocol):
    """A unit of a net that the lesion study deletes."""

    residual: bool  # True: it has a `shortcut` (ResidualBlock), deleting it leaves that


@runtime_checkable
class ResidualBlock(Block, Protocol):
    shortcut: nn.Module  # the path around the branch: relu(shortcut(x)) is the block deleted


@runtime_checkable
class Net(Protocol):
    """What the harness relies on in a net, whatever its layers.

    Called on a batch (N, 3, 32, 32) it returns logits (N, num_classes); in training mode a net
    with side heads returns (logits, [side logits]) and has `aux_weight` (SideHeads), which the
    loss weights them by. Its classifier is a linear layer named `fc`, registered after the stage
    of its last block (transfer learning replaces it, and fine-tunes that stage); `blocks()` lists
    its blocks.
    """

    fc: nn.Linear

    def blocks(self) -> list[nn.Module]:
        """Its blocks (each a Block), input to output."""
        ...


@runtime_checkable
class SideHeads(Protocol):
    aux_weight: float  # each side head's cross-entropy counts this much in the training loss


class InvalidDepthError(OptionError):
    """The requested depth does not fit the architecture's layer pattern."""


def blocks_per_stage(depth: int, layers_per_block: int, unit: str | None = None) -> int:
    """n in depth = 3 * layers_per_block * n + 2 (stem, 3 stages of n blocks, classifier).
    `unit` names the blocks in the error message."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise InvalidDepthError(f"depth={depth!r}: the number of layers, an integer like 20")
    step = 3 * layers_per_block
    n, rest = divmod(depth - 2, step)
    if n >= 1 and rest == 0:
        return n
    # n < 1 (depth below the smallest valid one, even <= 0) rounds up to n = 1.
    valid = sorted({max(k, 1) * step + 2 for k in (n, n + 1)})
    unit = unit or f"blocks of {layers_per_block} conv layers"
    raise InvalidDepthError(
        f"depth={depth} is invalid: this architecture needs depth = {step}n+2 with n >= 1 "
        f"(a stem conv, 3 stages of n {unit}, a classifier). "
        f"Nearest valid depths: {', '.join(map(str, valid))}."
    )


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class PadShortcut(nn.Module):
    """Option A: subsample by `stride` and zero-pad the new channels. No parameters."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, out_planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


def make_shortcut(in_planes: int, out_planes: int, stride: int, option: str) -> nn.Module:
    """Identity where shapes match, else option A (zero-pad) or B (1x1 conv projection + BN)."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    if option == "A":
        return PadShortcut(in_planes, out_planes, stride)
    if option == "B":
        return nn.Sequential(
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_planes),
        )
    raise OptionError(f"arch.shortcut={option!r}: use 'A' (zero-pad) or 'B' (1x1 projection)")


class PlainBlock(nn.Module):
    """Two 3x3 conv + BN layers with a ReLU after each, and no shortcut."""

    expansion = 1  # output channels = planes * expansion
    layers = 2  # weighted layers per block: sets the depth rule 6n+2
    residual = False  # has a shortcut (what the lesion study and zero-init look for)

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x))


class BasicBlock(PlainBlock):
    """The residual block: PlainBlock plus a shortcut added before the last ReLU."""

    residual = True

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__(in_planes, planes, stride)
        self.shortcut = make_shortcut(in_planes, planes, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))  # a[l+2] = g(z[l+2] + a[l])


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (4x), each followed by BN, with a shortcut (§4.1, ResNet-164)."""

    expansion = 4
    layers = 3
    residual = True

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = make_shortcut(in_planes, out_planes, stride, shortcut)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.branch(x) + self.shortcut(x))


class CifarNet(nn.Module):
    """Stem (3x3 conv, `width` filters, BN, ReLU), 3 stages of blocks with width, 2 width and
    4 width filters (the paper's 16/32/64) on maps of the input's size, 1/2 and 1/4 (32/16/8 for
    CIFAR), GAP, linear. `block_options` go to every block (a residual block's shortcut option).
    `width` scales the net's cost by about its square at every depth, keeping the paper's shape:
    the knob for a CPU-sized Figure 6."""

    block: type[nn.Module] = PlainBlock

    def __init__(self, depth: int, num_classes: int = 10, width: int = 16, **block_options) -> None:
        super().__init__()
        n = blocks_per_stage(depth, self.block.layers)  # fails before anything is built
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise OptionError(f"arch.width={width!r}: the stem's filters, a positive integer (16)")
        self.depth, self.widths = depth, (width, 2 * width, 4 * width)
        self.stem = nn.Sequential(conv3x3(3, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.in_planes = width
        self.layer1 = self._make_layer(self.widths[0], n, 1, block_options)
        self.layer2 = self._make_layer(self.widths[1], n, 2, block_options)
        self.layer3 = self._make_layer(self.widths[2], n, 2, block_options)
        self.fc = nn.Linear(self.in_planes, num_classes)  # PyTorch's default init, as specified
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, n: int, stride: int, options: dict) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(self.block(self.in_planes, planes, s, **options))
            self.in_planes = planes * self.block.expansion
        return nn.Sequential(*layers)

    def blocks(self) -> list[nn.Module]:
        """All blocks, input to output."""
        return [*self.layer1, *self.layer2, *self.layer3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class PlainNet(CifarNet):
    block = PlainBlock


class ResNet(CifarNet):
    block = BasicBlock

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        width: int = 16,
        shortcut: str = "A",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__(depth, num_classes, width, shortcut=shortcut)
        if zero_init_residual:  # every residual block starts as the identity
            for b in self.blocks():
                nn.init.zeros_(b.last_bn.weight)


class BottleneckResNet(ResNet):
    block = Bottleneck


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Conv layers in registration order, which for these nets is forward order (a block's branch
    convs are registered before its projection shortcut, which is added after the branch)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, shape: tuple[int, int, int] = (3, 32, 32)) -> int:
    """Multiply-adds of one forward pass in eval mode on one image of `shape` (C, H, W; a 32x32
    RGB image by default), from torch's FLOP counter (conv and linear layers; 1 MAC = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, *shape, device=next(model.parameters()).device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
