"""Fused vs separate training steps: ms per step of K members, and per member-step.

    python -m experiments.fused_bench                      # CPU, depth 20, batch 128, K = 2 4 8
    python -m experiments.fused_bench --batch 32 --k 4 --vmap
    python -m experiments.fused_bench --device cuda --bf16 --channels-last --graph --depth 110

Ways to train K same-shape members one SGD step each (forward, cross-entropy, backward, SGD with
momentum and weight decay), all on the same K batches:
- separate: K ordinary nets one after the other, each with torch.optim.SGD (today's runs);
- fused:    one depthsweep.training.fused.FusedNet + FusedSGD (grouped convs, one flat update);
- vmap:     torch.func.stack_module_state + vmap(functional_call) of one ResNet, the alternative
            the fused module was chosen over (all members residual: vmap cannot switch a
            member's residual add without a custom block), torch SGD on the stacked tensors;
- with --graph (CUDA): separate-graph and fused-graph run forward+loss+backward as one CUDA graph
  replay (depthsweep.training.graphed.GraphedStep, per net or for the whole group), the update
  eager.

Members alternate ResNet and PlainNet (seeds 0..K-1) except in the vmap rows. Timings are
wall-clock minima over `--repeats` (interleaved across the variants) after `--warmup` steps,
with `--threads` torch CPU threads. CPU numbers on a small shared machine are indicative only:
the load changes under them.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from depthsweep.nets.models import PlainNet, ResNet
from depthsweep.training.clocks import synchronize
from depthsweep.training.fused import FusedNet, FusedSGD, fused_loss_and_error
from depthsweep.training.graphed import GraphedStep


def members(k: int, depth: int, mixed: bool = True) -> list[nn.Module]:
    """K nets seeded 0..K-1, alternating ResNet and PlainNet when `mixed`."""
    nets = []
    for i in range(k):
        torch.manual_seed(i)
        nets.append(PlainNet(depth) if mixed and i % 2 else ResNet(depth))
    return nets


class Setup:
    """Device, precision and layout shared by every variant."""

    def __init__(self, device: str, bf16: bool, channels_last: bool) -> None:
        self.device = torch.device(device)
        self.bf16 = bf16
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def autocast(self):
        # cache_enabled=False: the casts of a graphed step must happen inside its graph
        return torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False
        )


def separate_step(setup: Setup, nets, x: Tensor, y: Tensor, graph: bool = False) -> Callable:
    nets = [n.to(setup.device) for n in nets]
    opts = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4) for n in nets]
    xs = [x[k].contiguous(memory_format=setup.memory_format) for k in range(len(nets))]

    def forward_backward(net: nn.Module, xk: Tensor, yk: Tensor) -> tuple[Tensor]:
        with setup.autocast():
            loss = F.cross_entropy(net(xk), yk)
        loss.backward()
        return (loss.detach(),)

    graphed = [GraphedStep(lambda a, b, n=n: forward_backward(n, a, b), n) for n in nets]

    def step() -> None:
        for k, (net, opt) in enumerate(zip(nets, opts, strict=True)):
            if graph:
                graphed[k](xs[k], y[k])
            else:
                opt.zero_grad()
                forward_backward(net, xs[k], y[k])
            opt.step()

    return step


def fused_step(setup: Setup, nets, x: Tensor, y: Tensor, graph: bool = False) -> Callable:
    fused = FusedNet(nets).to(setup.device)
    fused.memory_format = setup.memory_format
    opt = FusedSGD(fused, 0.1, momentum=0.9, weight_decay=1e-4)

    def forward_backward(xs: Tensor, ys: Tensor) -> tuple[Tensor, ...]:
        with setup.autocast():
            loss, losses, errors = fused_loss_and_error(fused(xs), ys)
        loss.backward()
        return losses, errors

    graphed = GraphedStep(forward_backward, fused)

    def step() -> None:
        if graph:
            graphed(x, y)
        else:
            opt.zero_grad()
            forward_backward(x, y)
        opt.step()

    return step


def vmap_step(setup: Setup, nets, x: Tensor, y: Tensor, graph: bool = False) -> Callable:
    params, buffers = stack_module_state([n.to(setup.device) for n in nets])
    base = copy.deepcopy(nets[0]).to("meta")
    opt = torch.optim.SGD(list(params.values()), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def loss(p, b, xk, yk):
        return F.cross_entropy(functional_call(base, (p, b), (xk,)), yk)

    def step() -> None:
        opt.zero_grad()
        with setup.autocast():
            total = vmap(loss)(params, buffers, x, y).sum()
        total.backward()
        opt.step()

    return step


def timed(setup: Setup, steps: dict[str, Callable], warmup: int, repeats: int) -> dict:
    """Minimum ms per step of each variant, the variants' repeats interleaved (round-robin) so
    that a change in the machine's load hits them alike."""
    for step in steps.values():
        for _ in range(warmup):  # allocations, oneDNN primitives, cuDNN autotuning, graph capture
            step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, step in steps.items():
            synchronize(setup.device)
            t0 = time.perf_counter()
            step()
            synchronize(setup.device)
            best[name] = min(best[name], (time.perf_counter() - t0) * 1e3)
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--k", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--graph", action="store_true", help="also the CUDA-graph variants (CUDA)")
    ap.add_argument("--vmap", action="store_true", help="also torch.func's vmap")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    setup = Setup(args.device, args.bf16, args.channels_last)
    variants = {"separate": (separate_step, True, False), "fused": (fused_step, True, False)}
    if args.graph:
        if setup.device.type != "cuda":
            ap.error("--graph needs --device cuda")
        variants["separate-graph"] = (separate_step, True, True)
        variants["fused-graph"] = (fused_step, True, True)
    if args.vmap:
        variants["vmap"] = (vmap_step, False, False)
    print(
        f"depth {args.depth}, batch {args.batch} per member, device {args.device}, "
        f"bf16 {args.bf16}, channels_last {args.channels_last}, {args.threads} CPU thread(s)"
    )
    print(f"{'K':>3} {'method':>15} {'ms/step':>9} {'ms/member-step':>15} {'images/s':>9}")
    for k in args.k:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(k, args.batch, 3, 32, 32, generator=g).to(setup.device)
        y = torch.randint(0, 10, (k, args.batch), generator=g).to(setup.device)
        steps = {
            name: make(setup, members(k, args.depth, mixed), x, y, graph)
            for name, (make, mixed, graph) in variants.items()
        }
        for name, ms in timed(setup, steps, args.warmup, args.repeats).items():
            ips = k * args.batch / ms * 1e3
            print(f"{k:>3} {name:>15} {ms:>9.1f} {ms / k:>15.1f} {ips:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
