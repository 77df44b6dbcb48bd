"""Train an ordinary PyTorch model on MNIST with a learned optimizer, next to Adam.

Two models, written as a plain `nn.Sequential`, cross-entropy on minibatches of pixels scaled to [0, 1]:
- `--model mlp` (default): the paper's MNIST network (section 3.2), 784 inputs, 20 sigmoid hidden units, 10
  outputs. The "mnist" optimizer that ships with l2l was meta-trained on exactly this network for runs of 100
  steps; run longer to see how far it carries.
- `--model cnn`: PyTorch's MNIST example network (two 3×3 convolutions of 32 and 64 channels with ReLU, 2×2
  max pooling, dropout, a ReLU layer of 128 units; 1.2 M parameters). The "mnist" optimizer fails on it, as the
  paper's optimizer fails on ReLU networks; "general" (chapter 5) is meant for networks like it.
Both optimizers start from the same initial weights and see the same minibatches.

    python examples/train_mnist_with_learned_optimizer.py --steps 1000
    python examples/train_mnist_with_learned_optimizer.py --model cnn --optimizer general --steps 200 --batch-size 64
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


def make_model(kind: str = "mlp") -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 20), nn.Sigmoid(), nn.Linear(20, 10))
    return nn.Sequential(  # pytorch/examples' mnist/main.py, as an nn.Sequential; [N, 28, 28] → [N, 1, 28, 28]
        nn.Unflatten(1, (1, 28)), nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
        nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10))


MODELS = {"mlp": "784-20-10 sigmoid MLP", "cnn": "ReLU CNN (PyTorch's MNIST example)"}


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
def accuracy(model, images, labels, chunk: int = 1000) -> float:
    """Test accuracy with dropout off, in chunks so that the CNN's activations for 10,000 images fit in memory."""
    model.eval()
    right = sum((model(images[i:i + chunk].float() / 255).argmax(1) == labels[i:i + chunk]).sum().item()
                for i in range(0, labels.shape[0], chunk))
    model.train()
    return right / labels.shape[0]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1000, help="training steps for each optimizer (default 1000)")
    p.add_argument("--optimizer", default="mnist",
                   help="a shipped trained optimizer's name (python -m l2l list) or a .safetensors checkpoint path")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the minibatches")
    p.add_argument("--model", choices=tuple(MODELS), default="mlp",
                   help="mlp: the paper's MNIST network (default); cnn: PyTorch's MNIST example CNN")
    p.add_argument("--adam-lr", type=float, default=None,
                   help="Adam's learning rate (default 0.01 for mlp, Adam's own 0.001 for cnn; try 0.03 for the "
                        "mlp in runs of about 100 steps)")
    p.add_argument("--every", type=int, default=100, help="print the mean loss of every this many steps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    adam_lr = args.adam_lr if args.adam_lr is not None else {"mlp": 1e-2, "cnn": 1e-3}[args.model]
    device = pick_device(args.device)
    images, labels = load_mnist("train", device)
    test_images, test_labels = load_mnist("test", device)

    torch.manual_seed(args.seed)
    model = make_model(args.model).to(device)
    models = {"learned": model, "Adam": copy.deepcopy(model)}  # the same initial weights
    optimizers = {
        "learned": l2l.LearnedOptimizer(models["learned"].parameters(), optimizer=args.optimizer),
        "Adam": torch.optim.Adam(models["Adam"].parameters(), lr=adam_lr),
    }
    curves, step_time = {}, {}
    for name, opt in optimizers.items():
        curves[name], step_time[name] = train(models[name], opt, images, labels, args.steps, args.batch_size, args.seed)

    print(f"MNIST, {MODELS[args.model]}, {args.steps} steps of minibatch {args.batch_size} on {device}; "
          f"learned optimizer: {args.optimizer}; Adam lr {adam_lr:g}")
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
