"""Train an ordinary PyTorch model on MNIST with a learned optimizer, next to Adam.

The model is the paper's MNIST network (section 3.2), written as a plain `nn.Sequential`: 784 inputs, 20
sigmoid hidden units, 10 outputs, cross-entropy on minibatches of 128 pixels scaled to [0, 1]. The "mnist"
optimizer that ships with l2l was meta-trained on exactly this network for runs of 100 steps; run longer to
see how far it carries. Both optimizers start from the same initial weights and see the same minibatches.

    python examples/train_mnist_with_learned_optimizer.py --steps 1000
    python examples/train_mnist_with_learned_optimizer.py --optimizer path/to/lstm.safetensors --seed 3

Data: MNIST in torchvision's layout under $L2L_DATA (default ./data); set L2L_DOWNLOAD=1 to download it.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

import l2l
from l2l.data import load_mnist
from l2l.device import pick_device


def make_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 20), nn.Sigmoid(), nn.Linear(20, 10))


def train(model, opt, images, labels, steps: int, batch_size: int, seed: int) -> tuple[list[float], float]:
    """A plain training loop; returns the loss at every step and the seconds per step."""
    batches = torch.Generator(device=labels.device).manual_seed(seed)  # the same minibatches for every optimizer
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, labels.shape[0], (batch_size,), generator=batches, device=labels.device)
        loss = F.cross_entropy(model(images[idx].float() / 255), labels[idx])
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.detach())
    losses = torch.stack(losses).tolist()  # one host sync at the end, not one per step
    return losses, (time.perf_counter() - start) / max(steps, 1)


@torch.no_grad()
def accuracy(model, images, labels) -> float:
    return (model(images.float() / 255).argmax(1) == labels).float().mean().item()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000, help="training steps for each optimizer (default 1000)")
    p.add_argument("--optimizer", default="mnist",
                   help="a shipped trained optimizer's name (python -m l2l list) or a .safetensors checkpoint path")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the minibatches")
    p.add_argument("--adam-lr", type=float, default=1e-2,
                   help="Adam's learning rate (default 0.01; try 0.03 for runs of about 100 steps)")
    p.add_argument("--every", type=int, default=100, help="print the mean loss of every this many steps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    images, labels = load_mnist("train", device)
    test_images, test_labels = load_mnist("test", device)

    torch.manual_seed(args.seed)
    model = make_model().to(device)
    models = {"learned": model, "Adam": copy.deepcopy(model)}  # the same initial weights
    optimizers = {
        "learned": l2l.LearnedOptimizer(models["learned"].parameters(), optimizer=args.optimizer),
        "Adam": torch.optim.Adam(models["Adam"].parameters(), lr=args.adam_lr),
    }
    curves, step_time = {}, {}
    for name, opt in optimizers.items():
        curves[name], step_time[name] = train(models[name], opt, images, labels, args.steps, args.batch_size, args.seed)

    print(f"MNIST, 784-20-10 sigmoid MLP, {args.steps} steps of minibatch {args.batch_size} on {device}; "
          f"learned optimizer: {args.optimizer}; Adam lr {args.adam_lr:g}")
    print(f"{'steps':>11}  {'learned':>8}  {'Adam':>8}   (mean training loss)")
    for start in range(0, args.steps, args.every):
        end = min(start + args.every, args.steps)
        mean = {n: sum(c[start:end]) / (end - start) for n, c in curves.items()}
        print(f"{start + 1:>5}-{end:<5}  {mean['learned']:8.4f}  {mean['Adam']:8.4f}")
    result = {"curves": curves, "step_ms": {n: 1000 * t for n, t in step_time.items()},
              "test_accuracy": {n: accuracy(m, test_images, test_labels) for n, m in models.items()}}
    for name in optimizers:
        print(f"{name:>8}: test accuracy {result['test_accuracy'][name]:.4f}, "
              f"{result['step_ms'][name]:.2f} ms per training step")
    return result


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:  # an unknown optimizer name, missing data: one line, no traceback
        raise SystemExit(f"error: {e}") from None
