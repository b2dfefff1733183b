"""A CIFAR-sized GoogLeNet (Szegedy et al. 2015): Inception modules, 1x1 reductions, side heads.

An Inception module runs a 1x1, a 3x3, a 5x5 convolution and a 3x3 max-pool side by side ("same"
padding, stride 1) and concatenates their outputs along the channels. 1x1 convolutions before the
3x3 and 5x5 ones shrink the channels they convolve ("reductions"); the pool branch ends in a 1x1
projection so that it does not pass all of its input's channels on. Every conv is bias-free and
followed by BN and a ReLU, which the original (2014, before BN) did not have.

Depth counts weighted layers along the longest path, as the paper counts its 22: the stem conv,
2 per module (1x1 reduce, then 3x3 or 5x5), the classifier. With n modules in each of 3 stages that
is 6n+2. `reduce=False` drops the reductions from the same modules and keeps the depth label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from depthsweep.errors import OptionError
from depthsweep.nets.models import blocks_per_stage


def conv_bn_relu(in_planes: int, out_planes: int, kernel: int) -> nn.Sequential:
    """A bias-free "same" convolution, BN, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_planes),
        nn.ReLU(inplace=True),
    )


def reduced_conv(
    in_planes: int, reduce_to: int, out_planes: int, kernel: int, reduce: bool = True
) -> nn.Sequential:
    """A kxk branch: a 1x1 conv down to `reduce_to` channels first, or (reduce=False) the kxk conv
    on all `in_planes` channels."""
    if not reduce:
        return conv_bn_relu(in_planes, out_planes, kernel)
    return nn.Sequential(
        conv_bn_relu(in_planes, reduce_to, 1), conv_bn_relu(reduce_to, out_planes, kernel)
    )


class Inception(nn.Module):
    """Branches 1x1; 1x1->3x3; 1x1->5x5; 3x3 max-pool->1x1, concatenated in that order. The
    arguments follow GoogLeNet's table: (192, 64, 96, 128, 16, 32, 32) is its module 3a."""

    layers = 2  # weighted layers on the longest path: sets the depth rule 6n+2
    residual = False  # no shortcut: a lesion deletes it only where its shape is unchanged

    def __init__(
        self,
        in_planes: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        reduce: bool = True,
    ) -> None:
        super().__init__()
        self.branch1 = conv_bn_relu(in_planes, ch1x1, 1)
        self.branch3 = reduced_conv(in_planes, ch3x3red, ch3x3, 3, reduce)
        self.branch5 = reduced_conv(in_planes, ch5x5red, ch5x5, 5, reduce)
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), conv_bn_relu(in_planes, pool_proj, 1)
        )
        self.out_planes = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch1, self.branch3, self.branch5, self.branch_pool)
        return torch.cat([b(x) for b in branches], 1)


def aux_head(in_planes: int, num_classes: int) -> nn.Sequential:
    """A side softmax head, GoogLeNet's scaled down: average-pool to 4x4, 1x1 conv to 32 channels,
    a linear classifier (without the original's 1024-unit hidden layer and dropout)."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(4),
        conv_bn_relu(in_planes, 32, 1),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, num_classes),
    )


class InceptionNet(nn.Module):
    """Stem (3x3 conv to 64 channels, BN, ReLU); 3 stages of n Inception modules on 32/16/8 maps,
    a 3x3 max-pool of stride 2 opening stages 2 and 3; global average pooling; a linear layer.

    A stage of width w uses GoogLeNet 3a's proportions: 1x1 w, 3x3 2w (reduced to 1.5w),
    5x5 w/2 (reduced to w/4), pool projection w/2, so its modules output 4w channels.

    With aux_weight > 0, side heads read the outputs of stages 1 and 2; in training mode forward
    then returns (logits, [side logits]) and the loss adds aux_weight times their cross-entropy
    (depthsweep.training.module.Classifier). In eval mode it returns the main logits only.
    """

    widths = (16, 32, 64)

    def __init__(
        self, depth: int, num_classes: int = 10, reduce: bool = True, aux_weight: float = 0.0
    ) -> None:
        super().__init__()
        n = blocks_per_stage(depth, Inception.layers, "Inception modules, each 2 layers deep")
        if aux_weight < 0:
            raise OptionError(f"arch.aux_weight={aux_weight}: must be >= 0 (0: no side heads)")
        self.depth, self.aux_weight = depth, aux_weight
        self.in_planes = 4 * self.widths[0]
        self.stem = conv_bn_relu(3, self.in_planes, 3)
        self.layer1 = self._make_stage(self.widths[0], n, reduce, downsample=False)
        self.layer2 = self._make_stage(self.widths[1], n, reduce, downsample=True)
        side_planes = [self.layer1[-1].out_planes, self.layer2[-1].out_planes]
        self.layer3 = self._make_stage(self.widths[2], n, reduce, downsample=True)
        self.fc = nn.Linear(self.in_planes, num_classes)
        heads = [aux_head(p, num_classes) for p in side_planes] if aux_weight > 0 else []
        self.aux_heads = nn.ModuleList(heads)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_stage(self, w: int, n: int, reduce: bool, downsample: bool) -> nn.Sequential:
        layers: list[nn.Module] = [nn.MaxPool2d(3, stride=2, padding=1)] if downsample else []
        for _ in range(n):
            module = Inception(self.in_planes, w, 3 * w // 2, 2 * w, w // 4, w // 2, w // 2, reduce)
            layers.append(module)
            self.in_planes = module.out_planes
        return nn.Sequential(*layers)

    def blocks(self) -> list[Inception]:
        """All Inception modules, input to output (the diagnostics' lesion study deletes them)."""
        stages = (self.layer1, self.layer2, self.layer3)
        return [m for stage in stages for m in stage if isinstance(m, Inception)]

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, list[Tensor]]:
        x1 = self.layer1(self.stem(x))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(x3, 1), 1))
        if self.training and self.aux_heads:
            return logits, [head(f) for head, f in zip(self.aux_heads, (x1, x2), strict=True)]
        return logits
