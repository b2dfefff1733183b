"""Fused runs: a FusedNet of K members computes what the K nets compute alone, and FusedSGD with
per-member schedules trains each member as its own unfused run would.

Tolerances, measured on the development machine (x86 CPU, torch 2.14):
- float64, and float32 with oneDNN off ("reference kernels": the CPU's grouped conv then runs the
  ungrouped conv's kernel once per group): forward, gradients, and 6 steps of training with
  momentum, per-member lr and weight decay, two kinds of warm-up end and two lr decays, BN running
  statistics included, are *bitwise* equal to the separate runs (max difference 0, in float64 as
  well). The float32 tests assert exactly that; the float64 ones allow a relative 1e-10 in case
  another platform orders a float64 sum differently.
- float32 with oneDNN (the CPU's default, fast path): the grouped conv sums in another order.
  Logits differ by <= 2.4e-7 absolute (asserted: rtol 1e-5, atol 1e-5). Gradients differ by
  ~2e-7 absolute (relative ~2e-6) *unless* a pre-activation within ~1e-7 of zero lands on the
  other side of a ReLU in one of the two computations (5 of the 9 batches tried): that element's
  gradient then differs entirely, and every weight gradient below it moves, by up to 1.5e-2 of
  its norm. Training compounds it (8 steps at batch 8: up to 1.6e-2 relative, 7e-4 absolute in
  the parameters). So that test bounds whole-tensor relative errors at 3e-2, against gross errors
  (mixing members' channels gives O(1)); the proof of exactness is the bitwise tests.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from depthsweep.nets.models import BottleneckResNet, PlainNet, ResNet
from depthsweep.training.fused import (
    FusedNet,
    FusedPadShortcut,
    FusedSGD,
    FusionError,
    fused_loss_and_error,
    member_schedulers,
)
from depthsweep.training.schedule import PaperLR

KINDS = ("plain", "resnet", "resnet", "plain")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is faster, and spares a loaded machine the threads'
    spinning (10x the time with 2 threads on 2 busy cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SEEDS = (11, 12, 13, 14)


def make_net(kind: str, seed: int, depth: int = 8, **options) -> nn.Module:
    """As an unfused run builds its net: the seed first, then the constructor."""
    torch.manual_seed(seed)
    return PlainNet(depth) if kind == "plain" else ResNet(depth, **options)


def make_nets(dtype=torch.float32, kinds=KINDS, **options) -> list[nn.Module]:
    return [make_net(k, s, **options).to(dtype) for k, s in zip(kinds, SEEDS, strict=False)]


def batches(k: int, b: int, dtype=torch.float32, seed: int = 0, size: int = 16):
    """K members' batches of b images, x (K, b, 3, size, size) and labels (K, b). 16x16 images
    keep the tests fast; the nets pool globally, so every layer runs as on 32x32 ones."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(k, b, 3, size, size, generator=g, dtype=dtype)
    return x, torch.randint(0, 10, (k, b), generator=g)


@pytest.fixture(params=["float64", "float32-reference-kernels"])
def exact_dtype(request):
    """A dtype in which fused and separate computations are bitwise equal on the CPU."""
    if request.param == "float64":
        yield torch.float64
    else:
        with torch.backends.mkldnn.flags(enabled=False):
            yield torch.float32


def assert_equal(got: torch.Tensor, want: torch.Tensor, msg: str = "") -> None:
    """Bitwise in float32 (reference kernels); float64 within 1e-10 relative."""
    if want.dtype == torch.float64:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=msg)
    else:
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=msg)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def assert_same_state(fused_sd: dict, member_sd: dict) -> None:
    assert list(fused_sd) == list(member_sd)
    for key, v in member_sd.items():
        assert fused_sd[key].shape == v.shape, key
        assert fused_sd[key].dtype == v.dtype, key
        assert_equal(fused_sd[key], v, key)


def member_grads(nets, x, y) -> list[dict[str, torch.Tensor]]:
    out = []
    for k, net in enumerate(nets):
        net.zero_grad()
        F.cross_entropy(net(x[k]), y[k]).backward()
        out.append({n: p.grad.clone() for n, p in net.named_parameters()})
    return out


def fused_grads(fused, x, y) -> list[dict[str, torch.Tensor]]:
    fused.zero_grad()
    fused_loss_and_error(fused(x), y)[0].backward()
    named = dict(fused.named_parameters())
    return [{n: named[n].grad[k] for n in fused.member_parameter_names(k)} for k in range(fused.k)]


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_forward_and_gradients_equal_the_members_own(shortcut, exact_dtype):
    nets = make_nets(exact_dtype, shortcut=shortcut)
    fused = FusedNet(nets)
    x, y = batches(4, 4, exact_dtype)
    logits = fused(x)
    for k, net in enumerate(nets):
        assert_equal(logits[k], net(x[k]))
    for got, want in zip(fused_grads(fused, x, y), member_grads(nets, x, y), strict=True):
        assert list(got) == list(want)
        for name in want:
            assert_equal(got[name], want[name], name)


def test_forward_and_gradients_float32_onednn_within_reordering_tolerance():
    nets = make_nets(torch.float32)
    fused = FusedNet(nets)
    x, y = batches(4, 16, size=32)
    logits = fused(x)
    for k, net in enumerate(nets):
        torch.testing.assert_close(logits[k], net(x[k]), rtol=1e-5, atol=1e-5)
    for got, want in zip(fused_grads(fused, x, y), member_grads(nets, x, y), strict=True):
        worst = max(rel(got[n], want[n]) for n in want)
        assert worst < 3e-2, worst


MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def matmul_calls(work) -> list[tuple]:
    """Every matrix multiply `work()` runs, forward and backward, as torch's profiler records it:
    the op and its operands' shapes and strides (what picks a BLAS kernel and its order of
    summation)."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        work()
    return sorted(
        (e.name, str(e.input_shapes), str(e.structured_input_strides))
        for e in prof.events()
        if e.name in MATMULS
    )


def test_the_classifier_runs_each_members_own_linear_kernel():
    """Equality with unfused runs on any CPU needs each fused op to run the unfused op's kernel
    on the same shapes and strides: for the classifier that is checked here, not only on this
    CPU's numbers (a batched matmul gave an AMD EPYC's fc.weight gradient a rounding step)."""
    nets = make_nets(torch.float32)
    fused = FusedNet(nets)
    feats = torch.randn(8, len(nets), 64)  # (B, K, 64): how the fused net's pooling lays them out
    grad_out = torch.randn(len(nets), 8, 10)
    outs, out = [], []

    def alone():
        outs.extend(net.fc(feats[:, k].contiguous()) for k, net in enumerate(nets))
        torch.autograd.backward(outs, list(grad_out))

    def together():
        out.append(fused.fc(feats.transpose(0, 1)))
        out[0].backward(grad_out)

    calls = matmul_calls(alone)
    assert matmul_calls(together) == calls
    assert {c[0] for c in calls} == {"aten::addmm", "aten::mm"} and len(calls) == 2 * len(nets)
    out = out[0]
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], outs[k], rtol=0, atol=0)
        torch.testing.assert_close(fused.fc.weight.grad[k], net.fc.weight.grad, rtol=0, atol=0)
        torch.testing.assert_close(fused.fc.bias.grad[k], net.fc.bias.grad, rtol=0, atol=0)


def test_eval_mode_uses_each_members_running_statistics():
    nets = make_nets()
    for i, net in enumerate(nets):  # distinct running statistics per member
        net(batches(1, 8, seed=100 + i)[0][0])
    fused = FusedNet(nets).eval()
    x, _ = batches(4, 4)
    for k, net in enumerate(nets):
        torch.testing.assert_close(fused(x)[k], net.eval()(x[k]), rtol=1e-5, atol=1e-5)


def pad_the_concatenation(self, x):
    """The bug the per-member padding avoids: zero-pad the K*C concatenated channels."""
    x = x[:, :, :: self.stride, :: self.stride]
    extra = self.extra * self.k
    return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


def test_option_a_pads_each_members_channels(monkeypatch):
    nets = make_nets(torch.float64, kinds=("resnet", "resnet"))
    fused = FusedNet(nets)
    x, _ = batches(2, 4, torch.float64)
    for k, net in enumerate(nets):
        assert_equal(fused(x)[k], net(x[k]))
    # the same check fails for a shortcut that pads the concatenation (same output shape)
    monkeypatch.setattr(FusedPadShortcut, "forward", pad_the_concatenation)
    with pytest.raises(AssertionError):
        torch.testing.assert_close(fused(x)[0], nets[0](x[0]), rtol=1e-6, atol=1e-6)
    # and the per-member layout of the shortcut itself, directly
    monkeypatch.undo()
    pad = fused.layer2[0].shortcut
    h = torch.randn(3, 2 * 16, 8, 8, dtype=torch.float64)
    out = pad(h)
    for k, net in enumerate(nets):
        ref = net.layer2[0].shortcut(h[:, 16 * k : 16 * (k + 1)])
        torch.testing.assert_close(out[:, 32 * k : 32 * (k + 1)], ref, rtol=0, atol=0)


def test_option_b_mixed_with_plain_members_keeps_each_members_own_keys():
    nets = make_nets(shortcut="B")
    fused = FusedNet(nets)
    for k, net in enumerate(nets):
        sd = fused.member_state_dict(k)
        assert list(sd) == list(net.state_dict())
        assert any("shortcut" in key for key in sd) == (KINDS[k] == "resnet")


def train_separately(nets, data, lrs, wds, warmups, end_warmup_at, iterations):
    """Each member as its own unfused run: SGD + PaperLR, its own batches. Also returns each
    step's loss and error % per member, as Classifier computes them."""
    opts, scheds, metrics = [], [], []
    for k, net in enumerate(nets):
        opt = torch.optim.SGD(net.parameters(), lr=lrs[k], momentum=0.9, weight_decay=wds[k])
        opts.append(opt)
        scheds.append(PaperLR(opt, iterations, (0.5, 0.75), 0.1, warmups[k], WARMUP_CAP))
    for it, (x, y) in enumerate(data):
        step = []
        for k, net in enumerate(nets):
            opts[k].zero_grad()
            logits = net(x[k])
            loss = F.cross_entropy(logits, y[k])
            step.append((loss.detach(), (logits.argmax(1) != y[k]).float().mean() * 100))
            loss.backward()
            opts[k].step()
            scheds[k].step()
            if it == end_warmup_at[k]:
                scheds[k].end_warmup("training error below the threshold")
        metrics.append(torch.stack([torch.stack(pair) for pair in step]))
    return opts, scheds, torch.stack(metrics)  # (steps, K, loss/error)


def train_fused(fused, data, lrs, wds, warmups, end_warmup_at, iterations):
    opt = FusedSGD(fused, lrs, momentum=0.9, weight_decay=wds)
    scheds = member_schedulers(opt, iterations, (0.5, 0.75), 0.1, warmups, WARMUP_CAP)
    metrics = []
    for it, (x, y) in enumerate(data):
        opt.zero_grad()
        loss, losses, errors = fused_loss_and_error(fused(x), y)
        metrics.append(torch.stack([losses, errors], 1))
        loss.backward()
        opt.step()
        for s in scheds:
            s.step()
        for k, s in enumerate(scheds):
            if it == end_warmup_at[k]:
                s.end_warmup("training error below the threshold")
    return opt, scheds, torch.stack(metrics)


# Member 1: warm-up ended by its error after iteration 0; member 2: warm-up ended by the cap (2);
# lr decays at 3 and 4 of 6 iterations; per-member lr and weight decay.
WARMUP_CAP = 2 / 6  # of the 6 iterations: ends at iteration 2
RECIPE = dict(
    lrs=[0.1, 0.1, 0.05, 0.2],
    wds=[1e-4, 5e-4, 1e-4, 0.0],
    warmups=[None, 0.01, 0.02, None],
    end_warmup_at=[None, 0, None, None],
    iterations=6,
)


def test_training_equals_separate_runs(exact_dtype):
    dtype = exact_dtype
    nets = make_nets(dtype)
    fused = FusedNet(nets)
    data = [batches(4, 4, dtype, seed=s) for s in range(RECIPE["iterations"])]
    opt, fscheds, fused_metrics = train_fused(fused, data, **RECIPE)
    opts, scheds, metrics = train_separately(nets, data, **RECIPE)
    assert_equal(fused_metrics, metrics)  # every step's loss and error %, per member
    for k, net in enumerate(nets):
        assert_same_state(fused.member_state_dict(k), net.state_dict())  # BN statistics too
        mine, theirs = opt.member_state_dict(k), opts[k].state_dict()
        assert mine["param_groups"] == theirs["param_groups"]  # lr, initial_lr, wd, ... as SGD's
        assert mine["state"].keys() == theirs["state"].keys()
        for i, s in theirs["state"].items():
            assert_equal(mine["state"][i]["momentum_buffer"], s["momentum_buffer"])
        assert fscheds[k].state_dict() == scheds[k].state_dict()
    assert fscheds[1].warmup_end == 1 and fscheds[2].warmup_end == 2  # both ways of ending it


def test_state_dicts_split_and_rebuild_members():
    nets = make_nets()
    fused = FusedNet(nets)
    x, y = batches(4, 4)
    fused_loss_and_error(fused(x), y)[0].backward()  # move the BN statistics off their init
    for k in range(4):
        sd = fused.member_state_dict(k)
        fresh = make_net(KINDS[k], seed=99)
        fresh.load_state_dict(sd, strict=True)
        torch.testing.assert_close(
            fresh.eval()(x[k]), fused.member_net(k).eval()(x[k]), rtol=0, atol=0
        )
    # the reverse: a fused net rebuilt from the members' state_dicts (a resume)
    other = FusedNet(make_nets())
    for k in range(4):
        other.load_member_state_dict(k, fused.member_state_dict(k))
    for key, v in fused.state_dict().items():
        assert torch.equal(other.state_dict()[key], v), key
    with_b = FusedNet(make_nets(shortcut="B"))
    with pytest.raises(KeyError):  # a resnet's projection shortcut into a plain member
        with_b.load_member_state_dict(0, with_b.member_state_dict(1))
    bad = dict(fused.member_state_dict(0))
    bad["fc.bias"] = torch.zeros(11)
    with pytest.raises(ValueError):
        other.load_member_state_dict(0, bad)


def test_optimizer_state_round_trip_continues_identically():
    iterations = 6
    data = [batches(4, 4, seed=s) for s in range(iterations)]
    recipe = dict(RECIPE, iterations=iterations)

    def run(fused, opt, scheds, part):
        for x, y in part:
            opt.zero_grad()
            fused_loss_and_error(fused(x), y)[0].backward()
            opt.step()
            for s in scheds:
                s.step()

    fused = FusedNet(make_nets())
    opt, scheds, _ = train_fused(fused, data[:3], **dict(recipe, end_warmup_at=[None] * 4))
    # checkpoint every member as an unfused run would, then resume into a new fused group
    nets_sd = [fused.member_state_dict(k) for k in range(4)]
    opt_sd = [opt.member_state_dict(k) for k in range(4)]
    sched_sd = [s.state_dict() for s in scheds]
    for k in range(4):  # an unfused SGD over the member's own net accepts the state
        net = make_net(KINDS[k], 0)
        sgd = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        sgd.load_state_dict(opt_sd[k])
        assert sgd.state_dict()["param_groups"] == opt_sd[k]["param_groups"]
    resumed = FusedNet(make_nets())
    for k in range(4):
        resumed.load_member_state_dict(k, nets_sd[k])
    ropt = FusedSGD(resumed, 1.0, momentum=0.9, weight_decay=0.0)
    rscheds = member_schedulers(
        ropt, iterations, warmup_lr=recipe["warmups"], warmup_max_fraction=WARMUP_CAP
    )
    for k in range(4):
        ropt.load_member_state_dict(k, opt_sd[k])
        rscheds[k].load_state_dict(sched_sd[k])
    assert ropt.lrs() == opt.lrs() and ropt.weight_decays() == opt.weight_decays()
    run(fused, opt, scheds, data[3:])
    run(resumed, ropt, rscheds, data[3:])
    for key, v in fused.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], v), key
    assert torch.equal(ropt.buf, opt.buf)
    # and the whole-group form
    again = FusedSGD(FusedNet(make_nets()), 0.1, weight_decay=0.0)
    again.load_state_dict(opt.state_dict())
    assert torch.equal(again.buf, opt.buf) and again.lrs() == opt.lrs()


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_a_diverging_member_leaves_the_others_alone_and_can_be_frozen(device, monkeypatch):
    """Bitwise: the same kernels run for the clean and the broken group (float32 on the CPU; on
    a GPU bf16 autocast, channels-last and deterministic cuDNN, not run yet)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    nets = [n.to(device) for n in make_nets()]
    clean, broken = FusedNet(nets), FusedNet(nets)
    if device == "cuda":
        clean.memory_format = broken.memory_format = torch.channels_last
    with torch.no_grad():  # member 1 (a resnet) diverged: NaN and inf in its weights
        broken.layer1[0].conv1.weight[1].fill_(float("nan"))
        broken.stem[0].weight[1, 0, 0, 0, 0] = float("inf")
        broken.stem[0].weight[3, 0, 0, 0, 0] = float("inf")  # member 3: a plain one, inf*0 = NaN

    def loss_of(fused, seed=0):
        x, y = (t.to(device) for t in batches(4, 4, seed=seed))
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            logits = fused(x)
            return logits, fused_loss_and_error(logits, y)[0]

    (out_clean, loss_clean), (out_broken, loss_broken) = loss_of(clean), loss_of(broken)
    assert out_broken[1].isnan().all() and out_broken[3].isnan().all()
    for k in (0, 2):
        assert torch.equal(out_broken[k], out_clean[k])
    loss_clean.backward()
    loss_broken.backward()
    named_clean, named_broken = dict(clean.named_parameters()), dict(broken.named_parameters())
    for k in (0, 2):
        for name in clean.member_parameter_names(k):
            assert torch.equal(named_broken[name].grad[k], named_clean[name].grad[k]), name
    # freeze the broken members: the others train as before, the frozen ones do not move
    opts = [FusedSGD(f, [0.1, 0.1, 0.05, 0.2], weight_decay=1e-4) for f in (clean, broken)]
    opts[1].freeze(1)
    opts[1].freeze(3)
    before = [broken.member_state_dict(k) for k in (1, 3)]
    for f, opt in zip((clean, broken), opts, strict=True):
        for s in range(3):
            opt.zero_grad()
            loss_of(f, seed=s)[1].backward()
            opt.step()
    for k in (0, 2):
        a, b = clean.member_state_dict(k), broken.member_state_dict(k)
        for key in a:
            assert torch.equal(a[key], b[key]), key
    for k, old in zip((1, 3), before, strict=True):
        now = broken.member_state_dict(k)
        for name in broken.member_parameter_names(k):  # parameters frozen (NaN stays NaN)
            assert torch.equal(now[name].isnan(), old[name].isnan())
            assert torch.equal(now[name].nan_to_num(), old[name].nan_to_num()), name
    assert opts[1].member_state_dict(1)["param_groups"][0]["lr"] == 0.1  # its schedule's own
    assert not opts[1].buf.isnan().any()


def test_bf16_autocast_and_channels_last_on_cpu():
    nets = make_nets(torch.float32, shortcut="A")
    fused = FusedNet(nets)
    x, y = batches(4, 4)
    ref = fused(x)
    fused.memory_format = torch.channels_last
    torch.testing.assert_close(fused(x), ref, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = fused(x)
        loss = fused_loss_and_error(logits, y)[0]
    loss.backward()
    assert logits.dtype == torch.bfloat16
    assert all(p.grad is not None and p.grad.isfinite().all() for p in fused.parameters())
    assert (logits.float() - ref).abs().max() < 0.1  # bf16: ~3 significant digits


def test_parameters_stay_views_of_one_flat_buffer():
    fused = FusedNet(make_nets(torch.float32)).double()
    flat, params = fused.flat_parameters()
    assert flat.dtype == torch.float64 and sum(p.numel() for p in params) == flat.numel()
    for p in fused.parameters():
        assert p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
    with torch.no_grad():
        flat.zero_()
    assert all((p == 0).all() for p in fused.parameters())
    fused.load_state_dict(FusedNet(make_nets(torch.float64)).state_dict())  # copies in place
    assert fused.flat_parameters()[0] is flat and flat.abs().sum() > 0


def test_nets_that_do_not_fuse_are_refused():
    with pytest.raises(FusionError):
        FusedNet([make_net("resnet", 0, depth=8), make_net("resnet", 1, depth=14)])
    with pytest.raises(FusionError):
        FusedNet([BottleneckResNet(11), BottleneckResNet(11)])
    with pytest.raises(FusionError):  # option A and option B members
        FusedNet([make_net("resnet", 0, shortcut="A"), make_net("resnet", 1, shortcut="B")])


@CUDA
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
def test_cuda_graph_of_the_whole_step_replays_the_eager_steps(bf16, monkeypatch):
    """Forward, loss, backward and FusedSGD.update captured as one CUDA graph (channels-last
    activations, bf16 autocast or not) reproduce the eager steps. Written without a GPU at hand:
    it has not run yet."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    dev = torch.device("cuda")
    nets = make_nets()
    data = [tuple(t.to(dev) for t in batches(4, 8, seed=s, size=32)) for s in range(4)]

    def make():
        fused = FusedNet(nets).to(dev)
        fused.memory_format = torch.channels_last
        return fused, FusedSGD(fused, [0.1, 0.1, 0.05, 0.2], weight_decay=1e-4)

    def forward_backward(fused, x, y):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss, losses, errors = fused_loss_and_error(fused(x), y)
        loss.backward()
        return losses, errors

    eager, eager_opt = make()
    for x, y in data:
        eager_opt.zero_grad()
        forward_backward(eager, x, y)
        eager_opt.step()

    fused, opt = make()
    sx, sy = data[0][0].clone(), data[0][1].clone()
    flat0 = fused.flat_parameters()[0].clone()
    buffers0 = [b.clone() for b in fused.buffers()]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (cuDNN, allocator) outside the capture
        for _ in range(3):
            fused.zero_grad(set_to_none=True)
            forward_backward(fused, sx, sy)
            opt.update()
    torch.cuda.current_stream().wait_stream(side)
    with torch.no_grad():  # undo the warm-up's updates
        fused.flat_parameters()[0].copy_(flat0)
        for b, v in zip(fused.buffers(), buffers0, strict=True):
            b.copy_(v)
        opt.buf.zero_()
    fused.zero_grad(set_to_none=True)  # the capture allocates the gradients in its pool
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        losses, errors = forward_backward(fused, sx, sy)
        opt.update()
    for x, y in data:
        sx.copy_(x)
        sy.copy_(y)
        graph.replay()
    torch.cuda.synchronize()
    assert losses.isfinite().all() and errors.shape == (4,)
    tol = dict(rtol=2e-2, atol=2e-3) if bf16 else dict(rtol=1e-4, atol=1e-5)
    got = fused.state_dict()
    for key, v in eager.state_dict().items():
        torch.testing.assert_close(got[key], v, **tol, msg=key)
