"""Benchmarks for l2l; prints one JSON line per figure.

    python benchmarks/bench.py                 # everything, CPU
    python benchmarks/bench.py --only meta     # meta-training throughput: ours against R1 and R2
    python benchmarks/bench.py --only init     # the same, l2l and R2, from several starting points φ₀
    python benchmarks/bench.py --only apply    # a learned step against Adam and its floor; where it goes; the 1.2M CNN
    python benchmarks/bench.py --only scaling  # time and memory per meta-training step against coordinates
    python benchmarks/bench.py --only processes  # 1 process x 2 threads against 2 processes x 1 thread (gloo)
    python benchmarks/bench.py --only cifar    # where a CIFAR meta-training step and a baseline step go (batch 128)
    python benchmarks/bench.py --only art      # where a neural-art step goes (8 photos at 64 and 128 px), VGG floor
    python benchmarks/bench.py --device cuda   # the same on a GPU

Every ratio is measured in one run, so machine noise cancels as far as it can, and every implementation starts
each timed run from the same φ₀ and random numbers (the l2l optimizer's initial φ, copied into the
references), so every repeat does the same work. R1 and R2 are reference
implementations kept inside this file (about 50 lines each):
  R1: the pattern of public reproductions: one LSTM call per parameter tensor, a backward through the
      unroll so far at every step (retain_graph=True), minibatches rebuilt on the host.
  R2: a well-written eager version: one nn.LSTMCell call per layer over all coordinates, one backward per
      unroll, data in memory.
Beside l2l itself, the meta-training figure times l2l with the fused CPU step turned off (L2L_FUSED=0)
and l2l with a meta-batch of --meta-batch problems per LSTM call, so each change is measured in the same run.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import l2l
from l2l.device import describe_device, pick_device
from l2l.experiments import mnist
from l2l.meta import MetaTrainConfig, sample_problem, train_on_problem
from l2l.optimizer import preprocess

UNROLL, HORIZON, BATCH = 20, 100, 128


def emit(**row):
    print(json.dumps(row), flush=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats=3, warmup=True):
    """Best wall time of `repeats` calls (after one warm-up call)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------------------------------- R1, R2
class CellLSTM(nn.Module):
    """Two nn.LSTMCell layers and a linear head, as the references build it."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.head = nn.LSTMCell(2, 20), nn.LSTMCell(20, 20), nn.Linear(20, 1)

    def forward(self, g, h):
        h1, c1 = self.c1(preprocess(g), (h[0], h[1]))
        h2, c2 = self.c2(h1, (h[2], h[3]))
        return 0.1 * self.head(h2).squeeze(1), (h1, c1, h2, c2)


def mlp_loss(params, x, y):
    W1, b1, W2, b2 = params
    return F.cross_entropy(F.linear(torch.sigmoid(F.linear(x, W1, b1)), W2, b2), y)


def init_mlp(device):
    g = torch.Generator().manual_seed(0)
    shapes = [(20, 784), (20,), (10, 20), (10,)]
    return [((torch.rand(s, generator=g) * 2 - 1) * 784 ** -0.5).to(device) for s in shapes]


def r1_run(lstm, meta_opt, images_host, labels_host, device, steps=HORIZON):
    """R1: per-tensor LSTM calls with offsets, backward through the unroll so far at every step."""
    params = [p.requires_grad_() for p in init_mlp(device)]
    n = sum(p.numel() for p in params)
    hidden = [torch.zeros(n, 20, device=device) for _ in range(4)]
    for t in range(steps):
        if t % UNROLL == 0:
            params = [p.detach().requires_grad_() for p in params]
            hidden = [h.detach() for h in hidden]
            total = 0
        idx = torch.randint(0, len(labels_host), (BATCH,))
        x = (images_host[idx].float() / 255).reshape(BATCH, -1).to(device)  # rebuilt on the host every step
        loss = mlp_loss(params, x, labels_host[idx].to(device))
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        new_params, new_hidden, offset = [], [[] for _ in range(4)], 0
        for p, g in zip(params, grads):  # one LSTM call per tensor, state rows found by offset
            k = p.numel()
            update, hs = lstm(g.detach().reshape(-1), [h[offset:offset + k] for h in hidden])
            for lst, h in zip(new_hidden, hs):
                lst.append(h)
            new_params.append(p + update.reshape(p.shape))
            offset += k
        params, hidden = new_params, [torch.cat(h) for h in new_hidden]
        total = total + mlp_loss(params, x, labels_host[idx].to(device))
        meta_opt.zero_grad()
        total.backward(retain_graph=True)  # through the whole unroll so far, at every step
        if t % UNROLL == UNROLL - 1:
            meta_opt.step()


def r2_run(lstm, meta_opt, images, labels, device, steps=HORIZON):
    """R2: one batched call per layer over all coordinates, one backward per unroll, data in memory."""
    shapes = [(20, 784), (20,), (10, 20), (10,)]
    sizes = [torch.Size(s).numel() for s in shapes]
    theta = torch.cat([p.reshape(-1) for p in init_mlp(device)])
    hidden = tuple(torch.zeros(theta.numel(), 20, device=device) for _ in range(4))
    for t in range(0, steps, UNROLL):
        theta, hidden = theta.detach().requires_grad_(), tuple(h.detach() for h in hidden)
        total = 0
        for _ in range(UNROLL):
            idx = torch.randint(0, len(labels), (BATCH,), device=device)
            x, y = images[idx].reshape(BATCH, -1).float() / 255, labels[idx]
            params = [p.view(s) for p, s in zip(theta.split(sizes), shapes)]
            g, = torch.autograd.grad(mlp_loss(params, x, y), theta, retain_graph=True)
            update, hidden = lstm(g, hidden)
            theta = theta + update
            total = total + mlp_loss([p.view(s) for p, s in zip(theta.split(sizes), shapes)], x, y)
        meta_opt.zero_grad()
        total.backward()
        meta_opt.step()


# ------------------------------------------------------------------------------------------------ figures
def interleaved_best(runs: dict, device, repeats: int) -> dict:
    """Best time of each callable over `repeats` rounds, the callables taking turns within each round, so a
    slow spell of a noisy machine hits every implementation rather than one (one warm-up call each first)."""
    for fn in runs.values():
        fn()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, fn in runs.items():
            best[name] = min(best[name], timed(fn, device, 1, warmup=False))
    return best


def fused_off(fn):
    """fn with the fused CPU step turned off (nn.LSTMCell's own kernels), as before issue 8."""
    def call():
        old = os.environ.get("L2L_FUSED")
        os.environ["L2L_FUSED"] = "0"
        try:
            fn()
        finally:
            os.environ.pop("L2L_FUSED") if old is None else os.environ.__setitem__("L2L_FUSED", old)
    return call


def reference_like(ours) -> CellLSTM:
    """A CellLSTM (for R1 and R2) holding the same φ as `ours`, an l2l MNIST optimizer: the same weights, the
    same starting point."""
    ref = CellLSTM()
    net = ours.nets["default"]
    with torch.no_grad():
        for mine, theirs in zip([*net.cells, net.head], [ref.c1, ref.c2, ref.head]):
            for name, t in mine.named_parameters():
                getattr(theirs, name).copy_(t)
    return ref


def from_start(lstm, run, seed=0):
    """`run(lstm, meta_opt)` as a callable that starts from the same φ, a fresh meta-Adam and the same random
    numbers every time it is called, so every repeat of a timing does the same work. (Without this, timings
    depend on where training has drifted: floating-point denormals, which this CPU handles about 4x slower,
    come and go with φ; see `bench_init`.)"""
    phi0 = copy.deepcopy(lstm.state_dict())

    def call():
        lstm.load_state_dict(phi0)
        torch.manual_seed(seed)
        run(lstm, torch.optim.Adam(lstm.parameters(), 1e-4))
    return call


def meta_runs(device, meta_batch, seed=0):
    """The meta-training implementations timed against each other: {name: (callable, optimizee steps)}, all
    starting from the same φ₀ (drawn from `seed`) and the same MNIST problem."""
    family = mnist.family(device, **mnist.BASE)
    images, labels = family.data("train")
    images_host, labels_host = images.cpu(), labels.cpu()
    cfg = MetaTrainConfig(horizon=HORIZON, unroll=UNROLL)
    torch.manual_seed(seed)
    ours = mnist.make_optimizer(device)
    ref = reference_like(ours).to(device)

    def l2l_run(k=1):  # one optimizee run of k problems side by side, the same ones at every call
        return lambda m, o: train_on_problem(m, sample_problem(family, torch.Generator().manual_seed(seed), k), o, cfg)

    return {
        "l2l": (from_start(ours, l2l_run(), seed), HORIZON),
        "l2l, unfused cell": (fused_off(from_start(ours, l2l_run(), seed)), HORIZON),
        f"l2l, meta-batch {meta_batch}": (from_start(ours, l2l_run(meta_batch), seed), meta_batch * HORIZON),
        "R2": (from_start(ref, lambda m, o: r2_run(m, o, images, labels, device), seed), HORIZON),
        # R1 is quadratic in the unroll length: time 2 unrolls and scale to steps per second
        "R1": (from_start(ref, lambda m, o: r1_run(m, o, images_host, labels_host, device, 2 * UNROLL), seed),
               2 * UNROLL),
    }, ours, family


def bench_meta(device, repeats, meta_batch):
    """Meta-training throughput on the MNIST base network at the paper's settings (optimizee steps/s)."""
    runs, ours, family = meta_runs(device, meta_batch)
    best = interleaved_best({k: fn for k, (fn, _) in runs.items()}, device, repeats)
    rates = {k: runs[k][1] / t for k, t in best.items()}
    for name, r in rates.items():
        emit(figure="meta_training_steps_per_s", impl=name, steps_per_s=round(r, 2), device=str(device))
    emit(figure="meta_training_ratio", l2l_over_R1=round(rates["l2l"] / rates["R1"], 2),
         l2l_over_R2=round(rates["l2l"] / rates["R2"], 2),
         fused_over_unfused=round(rates["l2l"] / rates["l2l, unfused cell"], 2),
         meta_batch_over_l2l=round(rates[f"l2l, meta-batch {meta_batch}"] / rates["l2l"], 2))
    bench_split(ours, family, device)


def bench_init(device, seeds):
    """How throughput depends on φ₀: l2l and R2 from the φ₀ of each seed (one timed run each, after a warm-up).
    Denormal floats make some starting points several times slower for PyTorch's own kernels."""
    for seed in seeds:
        runs, _, _ = meta_runs(device, 1, seed)
        t = interleaved_best({k: runs[k][0] for k in ("l2l", "R2")}, device, 1)
        emit(figure="meta_training_by_init", seed=seed, **{f"{k}_steps_per_s": round(HORIZON / v, 2)
                                                          for k, v in t.items()})


def bench_split(lstm, family, device, figure="meta_step_split", extra=None):
    """Where one meta-training step goes: the optimizee's forward/backward, the LSTM's forward and the
    meta-backward through it (the optimizee's graph is not kept: see l2l.unroll.linearized_loss_and_grads).
    extra: more {name: callable} timed in the same rounds (reported in ms)."""
    problem = family.sample(torch.Generator().manual_seed(1))
    theta = {g: t.requires_grad_() for g, t in problem.init().items()}

    def optimizee():
        torch.autograd.grad(problem.loss(theta).sum(), list(theta.values()))

    state = lstm.init_state(theta)
    grads = {g: torch.randn_like(t) for g, t in theta.items()}

    def lstm_forward():
        lstm.step(theta, grads, state)

    def lstm_forward_backward():
        new, _ = lstm.step(theta, grads, state)
        sum(t.sum() for t in new.values()).backward()

    extra = {k: fn(problem, theta) for k, fn in (extra or {}).items()}
    t = interleaved_best({"opt": optimizee, "fwd": lstm_forward, "both": lstm_forward_backward, **extra}, device, 7)
    t_meta = max(t["both"] - t["fwd"], 0.0)
    total = t["opt"] + t["fwd"] + t_meta
    emit(figure=figure, optimizee_fwd_bwd_ms=round(1e3 * t["opt"], 3),
         lstm_forward_ms=round(1e3 * t["fwd"], 3), meta_backward_ms=round(1e3 * t_meta, 3),
         share_lstm=round((t["fwd"] + t_meta) / total, 3), **{f"{k}_ms": round(1e3 * t[k], 3) for k in extra})


def relu_then_pool(problem, theta, images):
    """The CIFAR CNN's forward as it was before the change to max-pool-then-ReLU (same numbers): the "before"."""
    p, fam = problem.unflatten(theta), problem.family
    scale, shift = fam.normalisation(images.device)
    x = (images.float() * scale + shift).contiguous(memory_format=torch.channels_last)
    for i in range(len(fam.channels)):
        x = F.conv2d(x, p[f"conv{i}.weight"], padding=fam.kernel // 2)
        x = F.batch_norm(x, None, None, p[f"conv{i}.bn.gamma"], p[f"conv{i}.bn.beta"], training=True)
        x = F.max_pool2d(F.relu(x), 2)
    x = F.relu(F.batch_norm(F.linear(x.flatten(1), p["fc.weight"]), None, None, p["fc.bn.gamma"],
                            p["fc.bn.beta"], training=True))
    return F.linear(x, p["out.weight"], p["out.bias"])


def bench_cifar(device):
    """Chapter 3's costs at the paper's batch of 128: the split of a meta-training step (two LSTMs), the
    optimizee's forward/backward before the max-pool/ReLU reordering, an Adam baseline step, and whole
    meta-training runs of 100 steps (optimizee steps per second)."""
    from l2l.experiments import cifar
    family = cifar.family(device, batch_size=BATCH)
    lstm = cifar.make_optimizer(device)
    images, labels = family.data("train")
    batch = torch.randint(0, labels.numel(), (BATCH,), generator=torch.Generator().manual_seed(0)).to(device)

    def before(problem, theta):
        return lambda: torch.autograd.grad(F.cross_entropy(relu_then_pool(problem, theta, images[batch]),
                                                           labels[batch]), list(theta.values()))

    def adam_step(problem, theta):
        opt = torch.optim.Adam(list(theta.values()), 1e-3)
        return lambda: (opt.zero_grad(), problem.loss(theta).sum().backward(), opt.step())

    bench_split(lstm, family, device, "cifar_step_split",
                {"optimizee_fwd_bwd_relu_then_pool": before, "adam_step": adam_step})
    cfg = MetaTrainConfig(horizon=HORIZON, unroll=UNROLL)
    run = from_start(lstm, lambda m, o: train_on_problem(
        m, sample_problem(family, torch.Generator().manual_seed(0), 1), o, cfg))
    t = interleaved_best({"meta": run}, device, 2)["meta"]
    emit(figure="cifar_meta_training_steps_per_s", steps_per_s=round(HORIZON / t, 2), device=str(device))


def style_loss_before(problem, theta):
    """The neural-art loss f(θ) per image as StyleProblem.loss computed it before issue 17 (the same numbers to
    fp32 rounding): every term through plain autograd, the targets' norms recomputed at every step (the style
    Gram matrices expanded over the batch first), and Gram matrices built, divided and subtracted separately. The
    "before" of the art figure; tests/test_art.py checks the library's loss and gradient against it."""
    from l2l.problems.style import CONTENT_LAYERS, STYLE_LAYERS, gram, total_variation

    def relative(x, target):  # ‖x − target‖² / ‖target‖² per batch row
        dims = tuple(range(1, x.dim()))
        return (x - target).pow(2).sum(dims) / target.pow(2).sum(dims).clamp_min(1e-12)

    fam, x = problem.family, problem.images(theta)
    feats = fam.features(x)
    style = torch.stack([relative(gram(feats[l]), fam.style_grams[l].expand(x.shape[0], -1, -1))
                         for l in STYLE_LAYERS]).mean(0)
    content = relative(feats[CONTENT_LAYERS[0]], problem.content_target)
    w = fam.weights
    return x.shape[2] * x.shape[3] * (w.content * content + w.style * style + w.tv * total_variation(x))


def vgg_forward_flops(size: int, layers=None) -> int:
    """FLOPs of one image's VGG-19 forward at size × size up to the deepest of `layers` (Gatys': relu5_1),
    counting only the 3×3 convolutions: 2 · C_in · C_out · 9 · H · W each (ReLU, pooling and biases are
    negligible next to them)."""
    from l2l.vgg import CONVS, GATYS_LAYERS, layer_sequence

    order = layer_sequence()
    names = order[:max(order.index(l) for l in (layers or GATYS_LAYERS)) + 1]
    shapes = {name: (c_in, c_out) for name, c_in, c_out in CONVS}
    flops, side = 0, size
    for name in names:
        if name.startswith("conv"):
            c_in, c_out = shapes[name]
            flops += 2 * c_in * c_out * 9 * side * side
        elif name.startswith("pool"):
            side //= 2
    return flops


ART_SIZES = (("a", "train", 64), ("b", "test", 128))  # (setting, split, px at the paper profile)


def art_problem(setting: str, split: str, device, n_photos: int | None = None):
    """A paper-profile neural-art problem of `batch` (8) photos of `split` in `setting` (art.family), the same
    photos at every call; n_photos limits how many photos the family loads."""
    from dataclasses import replace

    from l2l.experiments import art

    s = art.settings("paper")
    if n_photos is not None:
        field_name = {"train": "n_train", "validation": "n_val", "test": "n_test"}[split]
        s = replace(s, **{field_name: n_photos})
    family = art.family(s, setting, split, device)
    return s, family, family.sample(torch.Generator().manual_seed(1))


def bench_art(device, repeats=3):
    """Chapter 4's costs at the paper profile (8 photos per problem) at 64 px (setting a, training photos) and
    128 px (setting b, test photos): the split of one meta-training step (the style loss's VGG-19 forward and
    backward, the LSTM's forward over 3·S² coordinates per photo, the meta-backward through it, everything else),
    an Adam baseline step, the loss as computed before issue 17, the VGG-19 network alone (NCHW and channels-last),
    and the network's FLOP floor at the measured matmul rate."""
    import copy as copy_

    from l2l.baselines import Adam
    from l2l.experiments import art
    from l2l.unroll import cut, start, unroll

    _, flops_per_s = measure_bandwidth_and_flops(device)
    emit(figure="machine", matmul_GFLOPs=round(flops_per_s / 1e9, 1), device=str(device),
         threads=torch.get_num_threads())
    for setting, split, size in ART_SIZES:
        t0 = time.perf_counter()
        s, family, problem = art_problem(setting, split, device)
        t_family = time.perf_counter() - t0
        assert family.size == size and problem.n_instances == s.batch
        vgg = family.features
        assert not any(p.requires_grad for p in vgg.parameters())  # frozen: no weight gradients are computed
        vgg_cl = copy_.deepcopy(vgg).to(memory_format=torch.channels_last)
        theta = {g: t.requires_grad_() for g, t in problem.init().items()}
        image = theta["image"]

        def network(model, memory_format=torch.contiguous_format):  # the convolutions alone, a trivial loss
            return lambda: torch.autograd.grad(
                sum(f.sum() for f in model(problem.images(theta).contiguous(memory_format=memory_format)).values()),
                image)

        lstm = art.make_optimizer(device)
        phi0 = copy_.deepcopy(lstm.state_dict())
        state = lstm.init_state(theta)
        grads = {g: torch.randn_like(t) for g, t in theta.items()}
        traj0 = start(lstm, problem)
        k = 2  # optimizee steps per timed unroll

        def meta_step():  # k steps of train_on_problem's unroll (linearized losses), its backward and meta-step
            lstm.load_state_dict(phi0)
            meta_opt = torch.optim.Adam(lstm.parameters(), s.meta.meta_lr)
            losses, traj = unroll(lstm, problem, traj0, k, track_graph=True)
            meta_opt.zero_grad(set_to_none=True)
            torch.stack([l.mean() for l in losses]).sum().backward()
            torch.nn.utils.clip_grad_norm_(list(lstm.parameters()), s.meta.clip)
            meta_opt.step()
            cut(traj)

        adam = Adam(0.1)
        traj_adam = start(adam, problem)
        runs = {
            "vgg": lambda: torch.autograd.grad(problem.loss(theta).sum(), image),
            "vgg_before": lambda: torch.autograd.grad(style_loss_before(problem, theta).sum(), image),
            "network": network(vgg), "network_channels_last": network(vgg_cl, torch.channels_last),
            "lstm_fwd": lambda: lstm.step(theta, grads, state),
            "lstm_both": lambda: sum(t.sum() for t in lstm.step(theta, grads, state)[0].values()).backward(),
            "meta_step_x2": meta_step,
            "adam_step": lambda: unroll(adam, problem, traj_adam, 1, track_graph=False),
            "problem_setup": lambda: family.sample(torch.Generator().manual_seed(1)),
        }
        t = interleaved_best(runs, device, repeats)
        step = t["meta_step_x2"] / k
        t_meta = max(t["lstm_both"] - t["lstm_fwd"], 0.0)
        other = step - t["vgg"] - t["lstm_fwd"] - t_meta
        floor = 2 * s.batch * vgg_forward_flops(size) / flops_per_s  # forward + input gradient ≈ 2 × forward
        ms = lambda x: round(1e3 * x, 1)  # noqa: E731
        emit(figure="art_step_split", setting=setting, size=size, photos=s.batch, coordinates=image.numel(),
             step_ms=ms(step), vgg_fwd_bwd_ms=ms(t["vgg"]), lstm_forward_ms=ms(t["lstm_fwd"]),
             meta_backward_ms=ms(t_meta), other_ms=ms(other), share_vgg=round(t["vgg"] / step, 3),
             adam_step_ms=ms(t["adam_step"]), vgg_fwd_bwd_before_ms=ms(t["vgg_before"]),
             network_fwd_bwd_ms=ms(t["network"]), network_channels_last_ms=ms(t["network_channels_last"]),
             problem_setup_ms=ms(t["problem_setup"]), family_build_s=round(t_family, 1))
        emit(figure="art_vgg_floor", setting=setting, size=size, photos=s.batch,
             forward_GFLOP=round(s.batch * vgg_forward_flops(size) / 1e9, 2),
             fwd_bwd_GFLOP=round(2 * s.batch * vgg_forward_flops(size) / 1e9, 2), floor_ms=ms(floor),
             vgg_over_floor=round(t["vgg"] / floor, 2), network_over_floor=round(t["network"] / floor, 2),
             vgg_before_over_floor=round(t["vgg_before"] / floor, 2))


def measure_bandwidth_and_flops(device):
    """Memory bandwidth (a large copy) and matmul throughput, to express the floor of a learned step."""
    n = 64 * 2**20 if device.type == "cuda" else 16 * 2**20
    a = torch.empty(n, device=device)
    b = torch.empty_like(a)
    t = timed(lambda: b.copy_(a), device, 5)
    bandwidth = 2 * 4 * n / t
    m = torch.randn(2048, 2048, device=device)
    t = timed(lambda: m @ m, device, 5)
    flops = 2 * 2048**3 / t
    return bandwidth, flops


def apply_floor_flops(kind: str, h: int = 20) -> int:
    """FLOPs per coordinate of one applied step: the multiply-adds of the 2-layer, h-unit LSTM's gates (4h rows,
    from the layer's input and its hidden state), the head, and the input projection: 2 preprocessed inputs into
    the first layer (the paper), or a 4 → h embedding before it (the general optimizer: ∇ and 3 momenta)."""
    if kind == "paper":
        return 2 * (4 * h * (2 + h) + 4 * h * (h + h) + h)
    return 2 * (4 * h + 2 * 4 * h * (h + h) + h)


def bench_apply(device, sizes):
    """A learned step (l2l.LearnedOptimizer.step) vs torch.optim.Adam.step on the same parameter, for the paper's
    MNIST LSTM and the general optimizer's architecture (l2l.general.RNNpropOptimizer as chapter 5 trains it: the
    cost does not depend on φ's values); each with its floor."""
    from l2l.general import RNNpropConfig, RNNpropOptimizer

    bandwidth, flops = measure_bandwidth_and_flops(device)
    emit(figure="machine", bandwidth_GBps=round(bandwidth / 1e9, 2), matmul_GFLOPs=round(flops / 1e9, 1),
         device=str(device))
    optimizers = {"paper": mnist.make_optimizer(device),
                  "general": RNNpropOptimizer(RNNpropConfig(beta1=(0.5, 0.9, 0.99))).to(device)}
    for n in sizes:
        need = 4 * n * (80 * 3 + 20 * 8)  # gates, activations and state, old and new, with headroom
        if need > 0.7 * free_memory_bytes(device):
            emit(figure="apply_step", n_params=n, skipped=f"needs about {need / 2**30:.1f} GiB; "
                 f"{free_memory_bytes(device) / 2**30:.1f} GiB are free")
            continue
        p = torch.zeros(n, device=device, requires_grad=True)
        p.grad = torch.randn(n, device=device)
        adam = torch.optim.Adam([p], lr=1e-3)
        learned = {kind: l2l.LearnedOptimizer([p], optimizer=opt) for kind, opt in optimizers.items()}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = interleaved_best({"adam": adam.step, **{k: o.step for k, o in learned.items()}}, device, 3)
        peak = peak_memory_mb(device)
        for kind in learned:
            # floor: read and write the state (2 layers × (h, c) × 20 floats; general: + 4 moments) and θ, ∇
            bytes_moved = n * 4 * (2 * 2 * 2 * 20 + 3 + (2 * 4 if kind == "general" else 0))
            floor = max(bytes_moved / bandwidth, n * apply_floor_flops(kind) / flops)
            emit(figure="apply_step", optimizer=kind, n_params=n, lstm_ms=round(1e3 * times[kind], 3),
                 adam_ms=round(1e3 * times["adam"], 3), lstm_over_adam=round(times[kind] / times["adam"], 1),
                 floor_ms=round(1e3 * floor, 3), over_floor=round(times[kind] / floor, 1), peak_MB=peak)


def bench_apply_split(device, n: int = 10**6):
    """Where the general optimizer's applied step on n coordinates goes (CPU): the LSTM layers' GEMMs alone and
    their compiled gate kernels alone, run at the step's own shapes (chunks of APPLY_CHUNK rows, two GEMMs into one
    buffer per layer, as l2l.fused_lstm.FusedLayers does), against the whole step and the floor of bench_apply.
    Everything else (moments, inputs, embedding, state copies) is the rest."""
    from l2l import fused_lstm
    from l2l.general import RNNpropConfig, RNNpropOptimizer
    from l2l.optimizer import APPLY_CHUNK

    if device.type != "cpu" or not fused_lstm.usable(torch.zeros(1)):
        return
    _, flops = measure_bandwidth_and_flops(device)
    opt = RNNpropOptimizer(RNNpropConfig(beta1=(0.5, 0.9, 0.99)))
    p = torch.zeros(n, requires_grad=True)
    p.grad = torch.randn(n)
    learned = l2l.LearnedOptimizer([p], optimizer=opt, lr=0)
    h = opt.config.hidden
    chunks = [APPLY_CHUNK] * (n // APPLY_CHUNK) + ([n % APPLY_CHUNK] if n % APPLY_CHUNK else [])  # as apply_ cuts
    weights = [(cell.weight_ih.detach(), cell.weight_hh.detach()) for cell in opt.net.cells]
    k, a = fused_lstm.gate_constants(h)
    fwd, bias = fused_lstm._kernels()["fwd"], torch.randn(4 * h)
    data = {rows: ([torch.randn(rows, w_ih.shape[1]) for w_ih, _ in weights], torch.randn(rows, h),
                   torch.randn(rows, h), torch.randn(rows, 4 * h)) for rows in set(chunks)}  # inputs, h, c, gates
    gemm_flops = sum(2 * rows * 4 * h * (w_ih.shape[1] + h) for rows in chunks for w_ih, _ in weights)

    def gemms():
        for rows in chunks:
            inputs, state, _, _ = data[rows]
            for x, (w_ih, w_hh) in zip(inputs, weights):
                (x @ w_ih.t()).addmm_(state, w_hh.t())

    def gates():
        for rows in chunks:
            _, _, c, pre = data[rows]
            for _ in weights:
                fwd(pre, c, bias, k, a)

    times = interleaved_best({"step": learned.step, "gemms": gemms, "gates": gates}, device, 3)
    floor = n * apply_floor_flops("general") / flops
    ms = lambda t: round(1e3 * t, 1)  # noqa: E731
    rest = times["step"] - times["gemms"] - times["gates"]
    emit(figure="apply_split", optimizer="general", n_params=n, chunk=APPLY_CHUNK, step_ms=ms(times["step"]),
         lstm_gemms_ms=ms(times["gemms"]), gate_kernels_ms=ms(times["gates"]), rest_ms=ms(rest),
         floor_ms=ms(floor), step_over_floor=round(times["step"] / floor, 2),
         gemms_over_floor=round(times["gemms"] / floor, 2), gates_over_floor=round(times["gates"] / floor, 2),
         lstm_gemm_flops=gemm_flops, gemm_GFLOPs=round(gemm_flops / times["gemms"] / 1e9, 1),
         matmul_GFLOPs=round(flops / 1e9, 1))


class ExampleCNN(nn.Module):
    """PyTorch's MNIST example network (1.2 M parameters): conv 32, conv 64, max-pool, dropout, FC 128, FC 10."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.dropout(x, 0.25, self.training).flatten(1)
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.5, self.training))


def bench_apply_cnn(device, batch: int = 64):
    """What a step costs on the 1.2 M-parameter MNIST CNN of issue 19 (batch 64): the model's own forward and
    backward, Adam's step, and LearnedOptimizer.step with the general optimizer's architecture."""
    from l2l.general import RNNpropConfig, RNNpropOptimizer

    torch.manual_seed(0)
    model = ExampleCNN().to(device)
    x, y = torch.randn(batch, 1, 28, 28, device=device), torch.randint(0, 10, (batch,), device=device)

    def forward_backward():
        model.zero_grad(set_to_none=False)
        F.cross_entropy(model(x), y).backward()

    forward_backward()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    general = l2l.LearnedOptimizer(model.parameters(), RNNpropOptimizer(RNNpropConfig(beta1=(0.5, 0.9, 0.99))),
                                   lr=0)  # lr 0: the weights stay put, so every repeat does the same work
    times = interleaved_best({"forward_backward": forward_backward, "adam": adam.step, "general": general.step},
                             device, 3)
    n = sum(p.numel() for p in model.parameters())
    emit(figure="apply_cnn", n_params=n, batch=batch, forward_backward_ms=round(1e3 * times["forward_backward"], 2),
         adam_ms=round(1e3 * times["adam"], 2), general_ms=round(1e3 * times["general"], 2),
         general_over_forward_backward=round(times["general"] / times["forward_backward"], 1))


def peak_memory_mb(device):
    """CUDA: peak allocated since the last reset. CPU: the process's peak resident set so far (it never
    goes down, so with sizes in increasing order it is the peak of the largest size run yet)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, 1)


def free_memory_bytes(device) -> int:
    """Memory available for tensors now: free GPU memory, or MemAvailable of /proc/meminfo on the CPU."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))


# what one meta-training unroll keeps for its backward, per coordinate per step: each of the 2 layers saves its
# gate activations (80 floats), tanh(c') (20) and its new h and c (40); ~20 more for the input and the update
SAVED_BYTES_PER_COORD_STEP = 4 * (2 * (80 + 20 + 40) + 20)


def bench_scaling(device, sizes):
    """Time and memory of one meta-training unroll (20 steps) against the number of coordinates."""
    from l2l.problems import QuadraticFamily  # a problem whose own cost is negligible next to the LSTM's

    lstm = mnist.make_optimizer(device)
    meta_opt = torch.optim.Adam(lstm.parameters(), 1e-4)
    cfg = MetaTrainConfig(horizon=UNROLL, unroll=UNROLL)
    for n in sizes:
        need = SAVED_BYTES_PER_COORD_STEP * UNROLL * n
        if need > 0.7 * free_memory_bytes(device):
            emit(figure="scaling", n_coords=n, skipped=f"an unroll keeps about {need / 2**30:.1f} GiB for its "
                 f"backward; {free_memory_bytes(device) / 2**30:.1f} GiB are free")
            continue
        family = QuadraticFamily(dim=10, batch=max(1, n // 10), device=device)
        problem = family.sample(torch.Generator().manual_seed(0))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t = timed(lambda: train_on_problem(lstm, problem, meta_opt, cfg), device, 1)
        peak = peak_memory_mb(device)
        held = saved_for_backward(lambda: train_on_problem(lstm, problem, meta_opt, cfg))
        emit(figure="scaling", n_coords=n, ms_per_step=round(1e3 * t / UNROLL, 3),
             us_per_step_per_1k_coords=round(1e6 * t / UNROLL / (n / 1e3), 2),
             saved_for_backward_MB=round(held / 2**20, 1), saved_bytes_per_coord_step=round(held / n / UNROLL, 1),
             peak_MB=peak)


def saved_for_backward(fn) -> int:
    """Bytes of the distinct storages autograd saves for backward while fn runs (one unroll's graph: the
    memory that grows with coordinates and unroll length), on any device."""
    seen = {}

    def pack(t):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


PROCESS_CONFIGS = (("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2), ("2 processes x 1 thread", 2, 1))


def process_worker(rank, world, threads, port, runs, queue):
    """One rank of `bench_processes`: meta-trains on `runs` MNIST problems after a warm-up run; puts (rank, s)."""
    from l2l import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(threads)
    group = distributed.init("cpu") if world > 1 else None
    try:
        family = mnist.family("cpu", **mnist.BASE)
        torch.manual_seed(0)
        lstm = mnist.make_optimizer()
        meta_opt = torch.optim.Adam(lstm.parameters(), 1e-4)
        cfg = MetaTrainConfig(horizon=HORIZON, unroll=UNROLL)
        generator = distributed.train_generator(0, rank)
        run = lambda: train_on_problem(lstm, family.sample(generator), meta_opt, cfg, group)  # noqa: E731
        run()  # warm-up: compiles the fused step
        if group is not None:
            group.all_reduce_sum(torch.zeros(1), "start")  # start the clocks together
        t0 = time.perf_counter()
        for _ in range(runs):
            run()
        queue.put((rank, time.perf_counter() - t0))
    finally:
        distributed.shutdown()


def bench_processes(repeats, runs):
    """Data-parallel meta-training on one machine (issue 18): optimizee steps/s of the whole job on the MNIST base
    network, for 1 process x 1 thread, 1 process x 2 threads and 2 gloo processes x 1 thread each, in turns
    (fresh processes per repeat; the best repeat of each is kept). A 2-process step includes its all-reduce."""
    import multiprocessing
    import socket

    ctx = multiprocessing.get_context("spawn")
    best = {name: float("inf") for name, _, _ in PROCESS_CONFIGS}
    for _ in range(repeats):
        for name, world, threads in PROCESS_CONFIGS:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            queue = ctx.Queue()
            procs = [ctx.Process(target=process_worker, args=(r, world, threads, port, runs, queue))
                     for r in range(world)]
            for proc in procs:
                proc.start()
            times = [queue.get(timeout=1800)[1] for _ in procs]
            for proc in procs:
                proc.join()
            best[name] = min(best[name], max(times))
    rates = {name: world * runs * HORIZON / best[name] for name, world, _ in PROCESS_CONFIGS}
    for name, rate in rates.items():
        emit(figure="processes_steps_per_s", config=name, steps_per_s=round(rate, 2), runs_per_process=runs)
    one, two_threads, two_procs = (rates[name] for name, _, _ in PROCESS_CONFIGS)
    emit(figure="processes_ratio", two_processes_over_two_threads=round(two_procs / two_threads, 2),
         two_processes_over_one_process=round(two_procs / one, 2), target_over_one_process=1.6)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--only", choices=["meta", "init", "apply", "scaling", "processes", "cifar", "art"],
                        help="run one group of figures")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (the best is kept)")
    parser.add_argument("--max-coords", type=float, default=1e7, help="largest size in the apply/scaling sweeps")
    parser.add_argument("--meta-batch", type=int, default=4, help="problems per LSTM call in the meta-batched row")
    parser.add_argument("--init-seeds", type=int, default=4, help="starting points φ₀ compared by the init figure")
    parser.add_argument("--process-runs", type=int, default=10,
                        help="timed optimizee runs per process in the processes figure")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    emit(figure="environment", python=sys.version.split()[0], torch=torch.__version__, l2l=l2l.__version__,
         device=describe_device(device), platform=platform.platform(), threads=torch.get_num_threads())
    sizes = [int(10**k) for k in range(3, 8) if 10**k <= args.max_coords]
    if args.only in (None, "meta"):
        bench_meta(device, args.repeats, args.meta_batch)
    if args.only in (None, "init"):
        bench_init(device, range(args.init_seeds))
    if args.only in (None, "apply"):
        bench_apply(device, [n for n in sizes if n >= 10**4])
        bench_apply_split(device, min(10**6, int(args.max_coords)))
        bench_apply_cnn(device)
    if args.only in (None, "scaling"):
        bench_scaling(device, sizes)
    if args.only in (None, "processes") and device.type == "cpu":
        bench_processes(args.repeats, args.process_runs)
    if args.only in (None, "cifar"):
        bench_cifar(device)
    if args.only in (None, "art"):
        bench_art(device, args.repeats)


if __name__ == "__main__":
    main()
