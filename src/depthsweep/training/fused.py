"""Fused runs: K same-shape CIFAR nets trained as one network (HFTA, Wang et al., MLSys 2021).

K member nets (PlainNet or ResNet of one depth, same widths, shortcut option and classes; each
with its own weights from its own seed) become one FusedNet whose every tensor has a leading
member axis K. Their activations travel member-major in one tensor (B, K*C, H, W), and every
layer keeps the members apart by construction:

- a conv is one grouped conv with groups=K (member k's output channels see only its own input
  channels); its weight (K, Cout, Cin, 3, 3) viewed as (K*Cout, Cin, 3, 3) costs no copy;
- a BatchNorm over the K*C concatenated channels is each member's own BatchNorm: statistics are
  per channel, so per member; running statistics (K, C) and a batch count per member;
- option A's shortcut subsamples and zero-pads *each member's* C channels (pad the concatenation
  and member k would read member k-1's channels); option B's is a grouped 1x1 conv and a fused BN;
- the residual add is a per-member switch: the shortcut is multiplied by a 0/1 mask per channel,
  so a plain member adds exactly +0.0 (its block computes what PlainBlock does, and its gradient
  through the shortcut is 0). A diverging member's inf*0 = NaN stays in its own channels;
- the classifier is each member's own linear layer, on its own features (K small matmuls: one
  batched matmul sums in another order on some CPUs).

The loss is the *sum* of the members' mean cross-entropies, so each member's parameters get
exactly the gradient of its own loss (and a NaN loss in one member leaves the others' gradients
alone: the gradient of a sum is 1 for every term).

Why grouped modules and not torch.func (stack_module_state + vmap(functional_call)): both run
the same grouped convs (their float32 logits agree bitwise on the CPU), and vmap does update the
stacked BatchNorm statistics correctly. But vmap keeps the member axis in front, (K, B, C, H, W),
and moves it into the channels around every op: extra copies, 1.1-1.4x the fused step's time on
the CPU at depth 20 (experiments/fused_bench.py), and no way to hold channels-last activations
(B, H, W, K*C) across layers. The residual switch would need a block class that is neither
PlainBlock nor BasicBlock anyway (functional_call runs one module's forward for every member).
Explicit modules keep every kernel visible, hold the parameters in one flat buffer for a
few-kernel optimizer, and mirror the member nets' names, so splitting back is a slice per tensor.

What fusion does on the CPU (experiments.bench, batch 128, 1 thread, the idle 2-core VM;
results/cpu_bench): it is slower per member-step than K separate nets, 1.1-1.3x at K=2 and
1.4-1.9x at K=8 and 10, because oneDNN's grouped conv backward is slower than the ungrouped one
and K-times-larger activations leave the caches. Its point is the GPU, where a ResNet of 16-64
channels leaves most of the device idle.

The optimizer (FusedSGD) is torch SGD (momentum, dampening 0, no Nesterov, weight decay added to
the gradient, first momentum buffer = d_p) with a learning rate and a weight decay per member,
applied to all members in a handful of elementwise ops over one flat buffer that all the fused
parameters are views of. Each member has a stand-in optimizer (`FusedSGD.members[k]`) whose lr
a PaperLR drives as in an unfused run; `FusedSGD.freeze(k)` stops a member (a diverged one) while
the others go on. Both split per member into the unfused formats (`member_state_dict`).

Only PlainNet/ResNet-style CifarNets (PlainBlock / BasicBlock) fuse; Bottleneck and Inception nets
are refused.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from depthsweep.nets.models import BasicBlock, CifarNet, PadShortcut, PlainBlock
from depthsweep.training.schedule import PaperLR


class FusionError(ValueError):
    """The nets cannot be fused (different shapes, unsupported layers)."""


def _stack(tensors: Sequence[Tensor]) -> Tensor:
    return torch.stack([t.detach() for t in tensors])


def _check_same(what: str, values: Sequence[object]) -> None:
    if any(v != values[0] for v in values[1:]):
        raise FusionError(f"members differ in {what}: {list(values)}")


class FusedConv2d(nn.Module):
    """K convs (no bias) of one shape as one grouped conv. weight: (K, Cout, Cin, kh, kw)."""

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        c = convs[0]
        for name in ("weight.shape", "stride", "padding", "dilation", "groups"):
            _check_same(f"conv {name}", [_attr(m, name) for m in convs])
        if c.bias is not None or c.groups != 1 or c.padding_mode != "zeros":
            raise FusionError("only bias-free, ungrouped, zero-padded convs fuse")
        self.k = len(convs)
        self.stride, self.padding, self.dilation = c.stride, c.padding, c.dilation
        self.weight = nn.Parameter(_stack([m.weight for m in convs]))

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.flatten(0, 1)  # (K*Cout, Cin, kh, kw): a view, member-major
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, groups=self.k)

    def extra_repr(self) -> str:
        k, cout, cin, kh, kw = self.weight.shape
        return f"K={k}, {cin}->{cout}, kernel=({kh}, {kw}), stride={self.stride}"


def _attr(m: nn.Module, dotted: str) -> object:
    for part in dotted.split("."):
        m = getattr(m, part)
    return m


class FusedBatchNorm2d(nn.Module):
    """K BatchNorm2d of C channels as one over K*C channels: per-channel statistics are
    per-member statistics. Parameters and running statistics (K, C); the batch count (K,)."""

    def __init__(self, bns: Sequence[nn.BatchNorm2d]) -> None:
        super().__init__()
        b = bns[0]
        for name in ("num_features", "eps", "momentum", "affine", "track_running_stats"):
            _check_same(f"BatchNorm {name}", [getattr(m, name) for m in bns])
        if not (b.affine and b.track_running_stats) or b.momentum is None:
            raise FusionError("only affine BatchNorms with running statistics and a momentum fuse")
        self.k, self.num_features = len(bns), b.num_features
        self.eps, self.momentum = b.eps, b.momentum
        self.weight = nn.Parameter(_stack([m.weight for m in bns]))
        self.bias = nn.Parameter(_stack([m.bias for m in bns]))
        self.register_buffer("running_mean", _stack([m.running_mean for m in bns]))
        self.register_buffer("running_var", _stack([m.running_var for m in bns]))
        self.register_buffer("num_batches_tracked", _stack([m.num_batches_tracked for m in bns]))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)  # as BatchNorm2d does; with a momentum, a count only
        # Views of the (K, C) tensors: F.batch_norm updates the running statistics in place.
        return F.batch_norm(
            x,
            self.running_mean.view(-1),
            self.running_var.view(-1),
            self.weight.view(-1),
            self.bias.view(-1),
            self.training,
            self.momentum,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"K={self.k}, {self.num_features}, eps={self.eps}, momentum={self.momentum}"


class FusedPadShortcut(nn.Module):
    """Option A for K members: subsample, then zero-pad each member's own channels (half before,
    the rest after, as PadShortcut), not the concatenation."""

    def __init__(self, k: int, in_planes: int, stride: int, extra: int) -> None:
        super().__init__()
        self.k, self.in_planes, self.stride, self.extra = k, in_planes, stride, extra

    def forward(self, x: Tensor) -> Tensor:
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
        x = x[:, :, :: self.stride, :: self.stride]
        b, _, h, w = x.shape
        half = self.extra // 2
        per_member = F.pad(
            x.reshape(b, self.k, self.in_planes, h, w), (0, 0, 0, 0, half, self.extra - half)
        )
        out = per_member.reshape(b, -1, h, w)
        if channels_last:  # keep the activations' layout
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def extra_repr(self) -> str:
        return f"K={self.k}, stride={self.stride}, extra={self.extra} per member"


def _fuse_shortcut(k: int, in_planes: int, shortcuts: Sequence[nn.Module | None]) -> nn.Module:
    """The residual members' shortcuts, fused (placeholders for plain members: any values do,
    their shortcut is multiplied by 0; zero conv weights and a default BN keep them finite)."""
    real = [s for s in shortcuts if s is not None]
    kinds = {type(s) for s in real}
    if len(kinds) != 1:
        raise FusionError(f"members' shortcuts differ: {sorted(t.__name__ for t in kinds)}")
    s = real[0]
    if isinstance(s, nn.Identity):
        return nn.Identity()
    if isinstance(s, PadShortcut):
        _check_same("shortcut padding", [(m.stride, m.extra) for m in real])
        return FusedPadShortcut(k, in_planes, s.stride, s.extra)
    if isinstance(s, nn.Sequential) and [type(m) for m in s] == [nn.Conv2d, nn.BatchNorm2d]:
        conv = [m[0] if m is not None else _placeholder(s[0]) for m in shortcuts]
        bn = [m[1] if m is not None else _placeholder(s[1]) for m in shortcuts]
        return nn.Sequential(FusedConv2d(conv), FusedBatchNorm2d(bn))
    raise FusionError(f"unsupported shortcut {type(s).__name__}")


def _placeholder(like: nn.Module) -> nn.Module:
    """A plain member's slot in a fused projection shortcut: `like`'s shape, dtype and device;
    a zero conv, or a freshly initialised BatchNorm."""
    m = copy.deepcopy(like)
    if isinstance(m, nn.Conv2d):
        nn.init.zeros_(m.weight)
    else:
        m.reset_parameters()
    return m


class FusedBlock(nn.Module):
    """K PlainBlocks/BasicBlocks of one shape. `residual[k]` says whether member k adds its
    shortcut; in a mixed group the shortcut is multiplied by a 0/1 mask per channel."""

    def __init__(self, blocks: Sequence[PlainBlock]) -> None:
        super().__init__()
        for b in blocks:
            if not isinstance(b, PlainBlock) or type(b).forward not in _BLOCK_FORWARDS:
                raise FusionError(f"{type(b).__name__} does not fuse (PlainBlock, BasicBlock only)")
        k = len(blocks)
        self.conv1 = FusedConv2d([b.conv1 for b in blocks])
        self.bn1 = FusedBatchNorm2d([b.bn1 for b in blocks])
        self.conv2 = FusedConv2d([b.conv2 for b in blocks])
        self.bn2 = FusedBatchNorm2d([b.bn2 for b in blocks])
        self.residual = [bool(getattr(b, "residual", False)) for b in blocks]
        self.mode = "all" if all(self.residual) else "none" if not any(self.residual) else "mixed"
        if self.mode != "none":
            own = [b.shortcut if r else None for b, r in zip(blocks, self.residual, strict=True)]
            self.shortcut = _fuse_shortcut(k, blocks[0].conv1.in_channels, own)
        planes = blocks[0].conv2.out_channels
        mask = torch.tensor(self.residual, dtype=torch.float32).repeat_interleave(planes)
        # Not saved: it is the members' architecture, rebuilt with the fused net.
        self.register_buffer("mask", mask.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.mode == "all":
            out = out + self.shortcut(x)
        elif self.mode == "mixed":  # one kernel: out + shortcut*mask (+0.0 for plain members)
            out = torch.addcmul(out, self.shortcut(x), self.mask.to(out.dtype))
        return F.relu(out)


# The blocks whose computation FusedBlock reproduces (a subclass overriding forward does not fuse).
_BLOCK_FORWARDS = (PlainBlock.forward, BasicBlock.forward)


class FusedLinear(nn.Module):
    """K linear layers of one shape: (K, B, in) -> (K, B, out), each member's through the
    kernel its own nn.Linear runs, on a contiguous (B, in) of its own. One batched matmul
    (baddbmm) sums in another order than addmm on some CPUs (an AMD EPYC: fc.weight's gradient
    one rounding step off), and the exact equality with unfused runs holds only where every op
    runs the unfused op's kernel; K small matmuls cost nothing next to the convs."""

    def __init__(self, linears: Sequence[nn.Linear]) -> None:
        super().__init__()
        _check_same("classifier shape", [tuple(m.weight.shape) for m in linears])
        if any(m.bias is None for m in linears):
            raise FusionError("only linear layers with a bias fuse")
        self.weight = nn.Parameter(_stack([m.weight for m in linears]))  # (K, out, in)
        self.bias = nn.Parameter(_stack([m.bias for m in linears]))  # (K, out)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack(
            [F.linear(x[k].contiguous(), self.weight[k], self.bias[k]) for k in range(len(x))]
        )


class FusedNet(nn.Module):
    """K PlainNet/ResNet members of identical shapes as one network.

    `FusedNet(nets)` copies the nets' weights and buffers (the nets are not modified or kept).
    forward: (K, B, 3, H, W), member k's own batch in x[k] -> logits (K, B, classes).
    Its state_dict has the members' names with a leading K axis; `member_state_dict(k)` is member
    k's own net's state_dict (exact keys, shapes and order), `load_member_state_dict(k, sd)` the
    reverse, `member_net(k)` a standalone copy of member k.

    All parameters are views into one flat buffer (param-major: each parameter's (K, ...) block is
    contiguous), re-established after .to()/.cuda()/.double(): FusedSGD updates it in one pass.
    `memory_format` (default contiguous) is applied to the fused input; set it to
    torch.channels_last for the channels-last fast path.
    """

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        super().__init__()
        nets = list(nets)
        if not nets:
            raise FusionError("no nets to fuse")
        for net in nets:
            if not isinstance(net, CifarNet):
                raise FusionError(f"{type(net).__name__} is not a CifarNet")
        _check_same("depth", [n.depth for n in nets])
        _check_same("blocks per stage", [[len(getattr(n, s)) for s in _STAGES] for n in nets])
        self.k = len(nets)
        self.memory_format = torch.contiguous_format
        stem = [n.stem for n in nets]
        self.stem = nn.Sequential(
            FusedConv2d([s[0] for s in stem]), FusedBatchNorm2d([s[1] for s in stem]), nn.ReLU()
        )
        for stage in _STAGES:
            blocks = zip(*[getattr(n, stage) for n in nets], strict=True)
            setattr(self, stage, nn.Sequential(*[FusedBlock(list(b)) for b in blocks]))
        self.fc = FusedLinear([n.fc for n in nets])
        self.residual = [bool(getattr(n.block, "residual", False)) for n in nets]
        # Each member's own keys in its own order, and a bodiless copy to rebuild it from.
        self._member_keys = [list(n.state_dict().keys()) for n in nets]
        self._member_params = [[name for name, _ in n.named_parameters()] for n in nets]
        self._skeletons = [copy.deepcopy(n).to("meta") for n in nets]
        missing = set().union(*map(set, self._member_keys)) - set(self.state_dict().keys())
        if missing:
            raise FusionError(f"fused net lacks member tensors {sorted(missing)}")
        self._flatten()

    @property
    def depth(self) -> int:
        return self._skeletons[0].depth

    def forward(self, x: Tensor) -> Tensor:
        k, b = x.shape[:2]
        if k != self.k:
            raise ValueError(f"input for {k} members, the fused net has {self.k}")
        # (K, B, C, H, W) -> (B, K*C, H, W), member-major channels
        x = x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:])
        x = x.contiguous(memory_format=self.memory_format)
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        x = F.adaptive_avg_pool2d(x, 1).view(b, self.k, -1).transpose(0, 1)  # (K, B, 4 width)
        return self.fc(x)

    # ---- splitting back --------------------------------------------------------------------

    def member_state_dict(self, k: int) -> OrderedDict[str, Tensor]:
        """Member k's own net's state_dict: same keys in the same order, same shapes (detached
        copies, on this net's device)."""
        fused = self.state_dict()
        return OrderedDict((key, fused[key][k].clone()) for key in self._member_keys[k])

    def load_member_state_dict(self, k: int, state: dict[str, Tensor]) -> None:
        """Load member k from its own net's state_dict (strict: exact keys and shapes)."""
        keys = self._member_keys[k]
        if set(state) != set(keys):
            extra, missing = sorted(set(state) - set(keys)), sorted(set(keys) - set(state))
            raise KeyError(f"member {k}: unexpected keys {extra}, missing keys {missing}")
        fused = self.state_dict(keep_vars=True)
        with torch.no_grad():
            for key in keys:
                dst = fused[key][k]
                if tuple(state[key].shape) != tuple(dst.shape):
                    raise ValueError(
                        f"member {k}: {key} has shape {tuple(state[key].shape)}, "
                        f"expected {tuple(dst.shape)}"
                    )
                dst.copy_(state[key])

    def member_net(self, k: int, device: torch.device | str | None = None) -> nn.Module:
        """A standalone copy of member k (its own class: PlainNet, ResNet, ...)."""
        device = device or self.fc.weight.device
        net = copy.deepcopy(self._skeletons[k]).to_empty(device=device)
        net.load_state_dict(self.member_state_dict(k), strict=True)
        return net.train(self.training)

    def member_parameter_names(self, k: int) -> list[str]:
        """Member k's parameter names in its net's parameters() order (an unfused optimizer's)."""
        return list(self._member_params[k])

    # ---- the flat parameter buffer ---------------------------------------------------------

    def flat_parameters(self) -> tuple[Tensor, list[nn.Parameter]]:
        """The buffer all parameters are views of, and the parameters in its order. A conversion
        (.to(device), .double(), ...) gives every parameter new data: they are aliased again here,
        on first use after it (nn.Module has no public hook for conversions)."""
        if self._flat_params[0].data_ptr() != self._flat.data_ptr():  # the first sits at 0
            self._flatten()
        return self._flat, self._flat_params

    def _flatten(self) -> None:
        params = list(self.parameters())
        total = sum(p.numel() for p in params)
        first = params[0]
        flat = torch.empty(total, device=first.device, dtype=first.dtype)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                view = flat[offset : offset + n].view_as(p)
                view.copy_(p)
                p.data = view
                offset += n
        self._flat, self._flat_params = flat, params


_STAGES = ("layer1", "layer2", "layer3")


# ---- loss ------------------------------------------------------------------------------------


def fused_loss_and_error(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """logits (K, B, classes), labels (K, B) -> (the sum of the members' mean cross-entropies,
    to backpropagate; each member's mean loss (K,); each member's error % (K,)). No host sync.

    One cross-entropy per member, as Classifier computes it: a single reduction='none' call
    averaged per member would differ from the unfused loss in the last bit about half the time."""
    losses = torch.stack([F.cross_entropy(logits[k], y[k]) for k in range(logits.shape[0])])
    errors = (logits.argmax(-1) != y).float().mean(1) * 100
    return losses.sum(), losses.detach(), errors.detach()


# ---- the optimizer ---------------------------------------------------------------------------


class MemberOptimizer(torch.optim.Optimizer):
    """Member k's stand-in for an lr scheduler: one parameter group with no parameters, whose
    'lr' (and 'weight_decay') the fused optimizer reads at every step. Its step() does nothing
    (FusedSGD updates every member); FusedSGD.step() calls it so that a scheduler sees the usual
    optimizer-then-scheduler order."""

    def __init__(self, lr: float, momentum: float, weight_decay: float) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, dampening=0, weight_decay=weight_decay, nesterov=False
        )
        super().__init__([{"params": []}], defaults)

    def step(self, closure: Callable[[], Tensor] | None = None) -> None:  # FusedSGD does it
        return None


class FusedSGD(torch.optim.Optimizer):
    """SGD with momentum for a FusedNet, with a learning rate and a weight decay per member.

    For every member k, exactly torch.optim.SGD(lr=lr[k], momentum, dampening=0,
    weight_decay=wd[k], nesterov=False): d_p = g + wd*p; buf = momentum*buf + d_p (the first
    buf = d_p, here from a zero buffer); p -= lr*buf, all members in a few elementwise ops over
    the net's flat parameter buffer with per-element coefficient vectors.

    `members[k]` is member k's stand-in optimizer: drive its lr with a PaperLR
    (`member_schedulers`). `freeze(k)` stops member k: no more updates, its momentum cleared;
    its gradients, NaN or not, are ignored.

    CUDA graphs: `step()` = `sync_hyperparameters()` (host side: copies the members' lr/wd to the
    device only when one changed, a rare host-to-device copy) + `update()` (device ops only, no
    sync, static shapes: capturable).
    """

    def __init__(
        self,
        net: FusedNet,
        lr: float | Sequence[float],
        momentum: float = 0.9,
        weight_decay: float | Sequence[float] = 0.0,
    ) -> None:
        k = net.k
        lrs, wds = _per_member("lr", lr, k), _per_member("weight_decay", weight_decay, k)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum}: must be in [0, 1)")
        flat, params = net.flat_parameters()
        super().__init__(params, dict(lr=float("nan"), momentum=momentum))  # lr: see members
        self.net, self.k, self.momentum = net, k, momentum
        self.members = [MemberOptimizer(lrs[i], momentum, wds[i]) for i in range(k)]
        self.frozen = [False] * k
        self.started = [False] * k  # whether member k's momentum buffer exists (torch SGD)
        self._blocks = []  # per parameter: (offset, numel per member)
        offset = 0
        for p in params:
            self._blocks.append((offset, p[0].numel()))
            offset += p.numel()
        # The flat buffer is parameter-major: for each parameter, K runs of its numel per member.
        per_member = torch.tensor([n for _, n in self._blocks], device=flat.device)
        self._runs = per_member.repeat_interleave(k)  # run lengths, parameter by parameter
        self.buf = torch.zeros_like(flat)
        self._lr = torch.zeros(k, device=flat.device, dtype=flat.dtype)
        self._wd = torch.zeros_like(self._lr)
        self._active = torch.ones(k, device=flat.device, dtype=torch.bool)
        self._neg_lr_full = torch.zeros_like(flat)
        self._wd_full = torch.zeros_like(flat)
        self._active_full = torch.ones_like(flat, dtype=torch.bool)
        self._host = None  # the (lrs, wds, frozen) on the device now
        self.sync_hyperparameters()

    # -- hyperparameters ---------------------------------------------------------------------

    def lrs(self) -> list[float]:
        return [m.param_groups[0]["lr"] for m in self.members]

    def weight_decays(self) -> list[float]:
        return [m.param_groups[0]["weight_decay"] for m in self.members]

    def sync_hyperparameters(self) -> None:
        """Copy the members' lr and weight decay (and the frozen set) to the device if changed.
        Host side; call outside a CUDA graph capture (step() does)."""
        host = (self.lrs(), self.weight_decays(), list(self.frozen))
        if host == self._host:
            return
        lrs, wds, frozen = host
        dev = self._lr.device
        with torch.no_grad():
            self._lr.copy_(
                torch.tensor(
                    [0.0 if f else v for v, f in zip(lrs, frozen, strict=True)],
                    dtype=self._lr.dtype,
                )
            )
            self._wd.copy_(torch.tensor(wds, dtype=self._wd.dtype))
            self._active.copy_(torch.tensor([not f for f in frozen]))
            self._neg_lr_full.copy_(self._per_element(-self._lr))
            self._wd_full.copy_(self._per_element(self._wd))
            self._active_full.copy_(self._per_element(self._active))
        assert self._lr.device == dev
        self._host = host

    def _per_element(self, values: Tensor) -> Tensor:
        """A per-member vector (K,) spread over the flat buffer's elements."""
        runs = values.repeat(len(self._blocks))  # member 0..K-1, for each parameter
        return runs.repeat_interleave(self._runs, output_size=self.buf.numel())

    # -- the update --------------------------------------------------------------------------

    @torch.no_grad()
    def update(self) -> None:
        """The SGD update of every active member from the parameters' .grad. Device ops only."""
        flat, params = self.net.flat_parameters()
        if flat.shape != self.buf.shape or flat.device != self.buf.device:
            raise RuntimeError("the fused net was moved or rebuilt after its optimizer was made")
        for p in params:
            if p.grad is None:
                raise RuntimeError("FusedSGD.step: every fused parameter needs a gradient")
        d_p = torch.cat([p.grad.reshape(-1) for p in params])
        d_p.addcmul_(self._wd_full, flat)  # + wd*p
        d_p = torch.where(self._active_full, d_p, 0.0)  # frozen members: ignore (NaN) gradients
        self.buf.mul_(self.momentum).add_(d_p)  # first step: 0*momentum + d_p = d_p
        flat.addcmul_(self._neg_lr_full, self.buf)  # p -= lr*buf (lr 0 and buf 0 when frozen)

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.sync_hyperparameters()
        self.update()
        for i, m in enumerate(self.members):
            m.step()  # tells member i's scheduler the optimizer stepped
            if not self.frozen[i]:
                self.started[i] = True
        return loss

    def freeze(self, k: int) -> None:
        """Stop member k (a diverged one): it is no longer updated and its gradients are ignored;
        its momentum buffer is cleared. The other members are unaffected."""
        self.frozen[k] = True
        with torch.no_grad():
            mine = torch.zeros(self.k, dtype=torch.bool, device=self.buf.device)
            mine[k] = True
            self.buf.masked_fill_(self._per_element(mine), 0.0)
        self.sync_hyperparameters()

    # -- per-member state in torch.optim.SGD's format ----------------------------------------

    def _member_buffers(self, k: int) -> dict[str, Tensor]:
        """Member k's momentum buffer per parameter name (views into the flat buffer)."""
        out = {}
        names = [n for n, _ in self.net.named_parameters()]
        for name, p, (offset, n) in zip(
            names, self.param_groups[0]["params"], self._blocks, strict=True
        ):
            out[name] = self.buf[offset + k * n : offset + (k + 1) * n].view(p.shape[1:])
        return out

    def member_state_dict(self, k: int) -> dict:
        """Member k's optimizer state as torch.optim.SGD.state_dict() of its own net's
        parameters (its parameters() order, its param group's lr, initial_lr, ...)."""
        names = self.net.member_parameter_names(k)
        bufs = self._member_buffers(k)
        stand_ins = [torch.empty(0) for _ in names]
        group = {key: v for key, v in self.members[k].param_groups[0].items() if key != "params"}
        sgd = torch.optim.SGD(
            stand_ins, lr=group["lr"], momentum=self.momentum, weight_decay=group["weight_decay"]
        )
        sgd.param_groups[0].update(group)
        if self.started[k]:
            for t, name in zip(stand_ins, names, strict=True):
                sgd.state[t] = {"momentum_buffer": bufs[name].clone()}
        return sgd.state_dict()

    def load_member_state_dict(self, k: int, state: dict) -> None:
        """Load member k from torch.optim.SGD.state_dict() of its own net (e.g. its checkpoint).
        Its lr and weight decay become member k's; momentum must match this optimizer's."""
        names = self.net.member_parameter_names(k)
        (group,) = state["param_groups"]
        if len(group["params"]) != len(names):
            raise ValueError(
                f"member {k}: {len(group['params'])} parameters, expected {len(names)}"
            )
        if (
            group.get("momentum") != self.momentum
            or group.get("dampening", 0) != 0
            or group.get("nesterov")
        ):
            raise ValueError(f"member {k}: SGD options {group} differ from the fused optimizer's")
        bufs = self._member_buffers(k)
        entries = [state["state"].get(i, {}).get("momentum_buffer") for i in group["params"]]
        started = [e is not None for e in entries]
        if any(started) and not all(started):
            raise ValueError(f"member {k}: momentum buffers for some parameters only")
        with torch.no_grad():
            for name, e in zip(names, entries, strict=True):
                if e is not None and tuple(e.shape) != tuple(bufs[name].shape):
                    raise ValueError(f"member {k}: momentum of {name} has shape {tuple(e.shape)}")
                bufs[name].copy_(e if e is not None else torch.zeros(()))
        self.started[k] = all(started)
        mine = self.members[k].param_groups[0]
        for key, v in group.items():
            if key != "params":
                mine[key] = v
        self.sync_hyperparameters()

    def state_dict(self) -> dict:
        """Every member's SGD state_dict, and which members are frozen."""
        return {
            "members": [self.member_state_dict(k) for k in range(self.k)],
            "frozen": list(self.frozen),
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["members"]) != self.k:
            raise ValueError(f"state for {len(state['members'])} members, expected {self.k}")
        for k, member in enumerate(state["members"]):
            self.load_member_state_dict(k, member)
        for k, f in enumerate(state["frozen"]):
            if f:
                self.freeze(k)


def _per_member(name: str, value: float | Sequence[float], k: int) -> list[float]:
    values = [float(value)] * k if isinstance(value, int | float) else [float(v) for v in value]
    if len(values) != k:
        raise ValueError(f"{name}: {len(values)} values for {k} members")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"{name}={values}: must be finite and >= 0")
    return values


def member_schedulers(
    opt: FusedSGD,
    iterations: int,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
    warmup_lr: float | None | Sequence[float | None] = None,
    warmup_max_fraction: float | None = None,
) -> list[PaperLR]:
    """One PaperLR per member, each driving its member's stand-in optimizer: step them all after
    every FusedSGD.step(); end member k's warm-up with `schedulers[k].end_warmup(reason)` when its
    running error drops below the threshold. Their state_dicts are an unfused run's."""
    if warmup_lr is None or isinstance(warmup_lr, int | float):
        warmup_lr = [warmup_lr] * opt.k
    if len(warmup_lr) != opt.k:
        raise ValueError(f"warmup_lr: {len(warmup_lr)} values for {opt.k} members")
    return [
        PaperLR(m, iterations, milestones, gamma, w, warmup_max_fraction)
        for m, w in zip(opt.members, warmup_lr, strict=True)
    ]
