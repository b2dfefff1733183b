"""Fused vs separate training steps on the CPU: ms per step of K members, and per member-step.

    python -m experiments.fused_bench                      # depth 20, batch 128, K = 2 4 8
    python -m experiments.fused_bench --batch 32 --k 4 --vmap

Three ways to train K same-shape members one SGD step each (forward, cross-entropy, backward,
SGD with momentum and weight decay), all on the same K batches:
- separate: K ordinary nets, one after the other, each with torch.optim.SGD (today's runs);
- fused:    one depthsweep.fused.FusedNet + FusedSGD (grouped convs, one flat update);
- vmap:     torch.func.stack_module_state + vmap(functional_call) of one ResNet, the alternative
            the fused module was chosen over (all members residual: vmap cannot switch a
            member's residual add without a custom block), with torch SGD on the stacked tensors.

Timings are wall-clock minima over `--repeats` after one warm-up step, with `--threads` torch
threads (1 by default, for comparable numbers on a shared machine). They are indicative only: on
a 2-core machine shared with other jobs the load changes under the measurement.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from depthsweep.fused import FusedNet, FusedSGD, fused_loss_and_error
from depthsweep.models import PlainNet, ResNet


def members(k: int, depth: int, mixed: bool = True) -> list[torch.nn.Module]:
    """K nets seeded 0..K-1, alternating resnet and plain when `mixed`."""
    nets = []
    for i in range(k):
        torch.manual_seed(i)
        nets.append(PlainNet(depth) if mixed and i % 2 else ResNet(depth))
    return nets


def separate_step(nets, x, y):
    opts = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4) for n in nets]

    def step():
        for k, (net, opt) in enumerate(zip(nets, opts, strict=True)):
            opt.zero_grad()
            F.cross_entropy(net(x[k]), y[k]).backward()
            opt.step()

    return step


def fused_step(nets, x, y):
    fused = FusedNet(nets)
    opt = FusedSGD(fused, 0.1, momentum=0.9, weight_decay=1e-4)

    def step():
        opt.zero_grad()
        fused_loss_and_error(fused(x), y)[0].backward()
        opt.step()

    return step


def vmap_step(nets, x, y):
    params, buffers = stack_module_state(nets)  # (K, ...) leaves that require grad
    base = copy.deepcopy(nets[0]).to("meta")
    opt = torch.optim.SGD(list(params.values()), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def loss(p, b, xk, yk):
        return F.cross_entropy(functional_call(base, (p, b), (xk,)), yk)

    def step():
        opt.zero_grad()
        vmap(loss)(params, buffers, x, y).sum().backward()
        opt.step()

    return step


def timed(step, repeats: int) -> float:
    step()  # warm-up: allocations, oneDNN primitive creation
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--k", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--vmap", action="store_true", help="also time torch.func's vmap")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"depth {args.depth}, batch {args.batch} per member, {args.threads} thread(s), CPU")
    print(f"{'K':>3} {'method':>9} {'ms/step':>9} {'ms/member-step':>15} {'images/s':>9}")
    for k in args.k:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(k, args.batch, 3, 32, 32, generator=g)
        y = torch.randint(0, 10, (k, args.batch), generator=g)
        variants = {"separate": (separate_step, True), "fused": (fused_step, True)}
        if args.vmap:
            variants["vmap"] = (vmap_step, False)
        for name, (make, mixed) in variants.items():
            ms = timed(make(members(k, args.depth, mixed), x, y), args.repeats)
            ips = k * args.batch / ms * 1e3
            print(f"{k:>3} {name:>9} {ms:>9.1f} {ms / k:>15.1f} {ips:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
