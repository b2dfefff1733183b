"""Why channels-last is not faster still on this EPYC: where a plain-56 step's time goes, and
whether batch norm in the contiguous layout (hooks converting around each BatchNorm2d) helps.

python results/cpu_paths_amd/batchnorm_layout.py > results/cpu_paths_amd/batchnorm_layout.txt
One thread, bf16 autocast, width 4, batch 128 of random 32x32 images, SGD momentum 0.9.
"""

import time

import torch
from torch.profiler import ProfilerActivity, profile

from depthsweep.nets.models import PlainNet, ResNet

torch.set_num_threads(1)


def build(net: type, depth: int, layout: str) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model, x = net(depth=depth, width=4), torch.randn(128, 3, 32, 32)
    if layout != "contiguous":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if layout == "channels-last, batch norm contiguous":
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.register_forward_pre_hook(lambda m, a: (a[0].contiguous(),))
                m.register_forward_hook(
                    lambda m, a, out: out.contiguous(memory_format=torch.channels_last)
                )
    return model, x


def stepper(model: torch.nn.Module, x: torch.Tensor):
    y = torch.randint(0, 10, (128,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


layouts = ("contiguous", "channels-last", "channels-last, batch norm contiguous")
for net in (PlainNet, ResNet):
    for depth in (20, 56):
        for layout in layouts:
            step = stepper(*build(net, depth, layout))
            for _ in range(3):
                step()
            t = time.perf_counter()
            for _ in range(15):
                step()
            ms = (time.perf_counter() - t) / 15 * 1e3
            print(f"{net.__name__}-{depth} {layout}: {ms:.1f} ms/step")

for layout in layouts[:2]:
    step = stepper(*build(PlainNet, 56, layout))
    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    print(f"\nPlainNet-56 {layout}, 5 steps:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=6))
