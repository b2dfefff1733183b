"""Why channels-last is not faster still on this EPYC: where a plain-56 step's time goes, and
whether batch norm in the contiguous layout (hooks converting around each BatchNorm2d) helps.

python results/cpu_paths_amd/batchnorm_layout.py > results/cpu_paths_amd/batchnorm_layout.txt
Timed as experiments/cpu_paths.py times a path (its `step_ms`: one thread, width 4, batch 128 of
random 32x32 images, bf16 autocast, SGD), here for plain and residual nets.
"""

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from depthsweep.nets.models import PlainNet, ResNet
from experiments.cpu_paths import step_ms


def batch_norm_contiguous(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.register_forward_pre_hook(lambda m, a: (a[0].contiguous(),))
            m.register_forward_hook(
                lambda m, a, out: out.contiguous(memory_format=torch.channels_last)
            )


LAYOUTS = {  # name: (channels-last, prepare)
    "contiguous": (False, None),
    "channels-last": (True, None),
    "channels-last, batch norm contiguous": (True, batch_norm_contiguous),
}
for arch in (PlainNet, ResNet):
    for depth in (20, 56):
        for name, (nhwc, prepare) in LAYOUTS.items():
            ms = step_ms(depth, 4, 32, 128, True, nhwc, False, 1, 15, arch=arch, prepare=prepare)
            print(f"{arch.__name__}-{depth} {name}: {ms:.1f} ms/step")

for name in ("contiguous", "channels-last"):
    with profile(activities=[ProfilerActivity.CPU]) as prof:  # 5 untimed steps, then 5 timed
        step_ms(56, 4, 32, 128, True, LAYOUTS[name][0], False, 1, 5)
    print(f"\nPlainNet-56 {name}, 10 steps:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=6))
