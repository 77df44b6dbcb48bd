"""Running an optimizer on an optimizee: the inner loop shared by meta-training and evaluation.

One step of the paper's computational graph (Figure 2):

    ∇_t = ∇_θ f(θ_t)                      (detached: ∂∇_t/∂φ = 0, unless second_order)
    θ_{t+1}, h_{t+1} = θ_t + m(∇_t, h_t; φ)
    f(θ_{t+1})                             (this loss enters the meta-loss and gives ∇_{t+1})

`Trajectory` carries θ, the last gradient and the optimizer state from one unroll to the next, so
truncated BPTT continues exactly where the previous unroll stopped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .optimizer import detach_state


@dataclass
class Trajectory:
    """Where an optimizee run stands: θ_t, f(θ_t) per instance, ∇_t, and the optimizer state."""

    theta: dict[str, Tensor]
    loss: Tensor  # [n_instances], detached
    grads: dict[str, Tensor]
    state: object
    step: int = 0


def loss_and_grads(problem, theta, keep_graph: bool, second_order: bool = False):
    """f(θ) per instance and ∇_θ Σ_instances f(θ) for each group.

    keep_graph: the loss will still be backpropagated into φ (meta-training), so its graph is kept.
    second_order: ∇ itself keeps its graph, so the meta-gradient includes ∂∇_t/∂φ.
    """
    losses = problem.loss(theta)
    groups = list(theta)
    grads = torch.autograd.grad(losses.sum(), [theta[g] for g in groups],
                                retain_graph=keep_graph or second_order, create_graph=second_order)
    return losses, dict(zip(groups, grads))


def linearized_loss_and_grads(problem, theta, instance_weights: Callable[[Tensor], Tensor] | None = None):
    """f(θ) and ∇ as `loss_and_grads(keep_graph=True)` gives them, without keeping the optimizee's graph.

    With ∇ detached (first order), the meta-loss depends on φ only through θ, and ∂f(θ_t)/∂θ_t is ∇_t,
    which this step computes anyway. So f is evaluated on a detached copy of θ, and each returned loss is
    f(θ_t) + (⟨θ_t, ∇_t⟩ − the same value detached) / n_instances: the same value, and under the meta-loss's
    sums and means over instances the same gradient to φ. A backward through the unroll then only runs
    through the LSTM's steps, and the 20 optimizee graphs of an unroll are never held in memory at once.

    That link term is pooled over instances, so it is exact for a meta-loss Σ_t mean_i ψ(f_i(θ_t)) only when ψ
    is linear or there is one instance. instance_weights(f) → w, w_i = ψ'(f_i), makes it exact for any such ψ
    with several instances: the link becomes ⟨θ_t, ∇_θ Σ_i w_i f_i⟩ (one more backward through the optimizee),
    spread over the instances with coefficients c, Σ_i w_i c_i = 1, so mean_i ψ(loss_i) has the exact gradient.
    """
    leaf = {g: t.detach().requires_grad_(True) for g, t in theta.items()}
    if instance_weights is None or problem.n_instances == 1:
        losses, grads = loss_and_grads(problem, leaf, keep_graph=False)
        link = sum((theta[g] * grads[g]).sum() for g in theta)
        return losses.detach() + (link - link.detach()) / losses.numel(), grads
    losses, grads = loss_and_grads(problem, leaf, keep_graph=True)
    w = instance_weights(losses.detach())
    tiny = torch.finfo(w.dtype).tiny
    u = w / w.abs().max().clamp_min(tiny)  # w / max |w|, so that Σ u² can neither underflow nor overflow
    weighted = torch.autograd.grad(losses, list(leaf.values()), grad_outputs=u)
    link = sum((theta[g] * d).sum() for g, d in zip(leaf, weighted))  # ⟨θ, ∇ Σ_i w_i f_i⟩ / max |w|
    c = u / (u * u).sum().clamp_min(tiny)  # Σ_i w_i c_i = max |w|
    return losses.detach() + (link - link.detach()) * c, grads


def start(optimizer, problem) -> Trajectory:
    """θ_0, f(θ_0) and ∇_0 of a fresh problem, with the optimizer's initial state."""
    theta = {g: t.requires_grad_(True) for g, t in problem.init().items()}
    losses, grads = loss_and_grads(problem, theta, keep_graph=False)
    theta = {g: t.detach() for g, t in theta.items()}
    return Trajectory(theta, losses.detach(), grads, optimizer.init_state(theta))


def unroll(optimizer, problem, traj: Trajectory, steps: int, track_graph: bool,
           second_order: bool = False, retain_optimizee_graph: bool = False,
           instance_weights: Callable[[Tensor], Tensor] | None = None) -> tuple[list[Tensor], Trajectory]:
    """Advance `traj` by `steps` optimizer steps.

    Returns the losses f(θ_{t+1}) … f(θ_{t+steps}) (each [n_instances]) and the new trajectory.
    With track_graph the losses carry the graph to φ through every θ update of this unroll; the caller
    backpropagates their sum once and then calls `cut` on the trajectory. Without it every step is
    detached at once, so memory stays flat however long the run.
    The meta-gradient is first order (∇ detached) unless second_order. First-order losses are linearized
    (see `linearized_loss_and_grads`); retain_optimizee_graph=True backpropagates through the optimizee's
    own graph instead, which gives the same meta-gradient more slowly (kept to test exactly that).
    instance_weights: for a meta-loss that is not a plain sum of the losses (see `linearized_loss_and_grads`).
    """
    theta, grads, state = traj.theta, traj.grads, traj.state
    losses = []
    for _ in range(steps):
        if not track_graph:
            with torch.no_grad():
                theta, state = optimizer.step(theta, grads, state)
            theta = {g: t.detach() for g, t in theta.items()}
        else:
            theta, state = optimizer.step(theta, grads, state)
        if track_graph and not (second_order or retain_optimizee_graph):
            step_losses, grads = linearized_loss_and_grads(problem, theta, instance_weights)
        else:
            theta = {g: t if t.requires_grad else t.requires_grad_(True) for g, t in theta.items()}
            step_losses, grads = loss_and_grads(problem, theta, keep_graph=track_graph, second_order=second_order)
        losses.append(step_losses if track_graph else step_losses.detach())
    last = losses[-1].detach() if losses else traj.loss
    return losses, Trajectory(theta, last, grads, state, traj.step + steps)


def cut(traj: Trajectory) -> Trajectory:
    """Truncation boundary: detach θ, ∇ and the optimizer state so the next unroll starts a new graph."""
    return Trajectory({g: t.detach() for g, t in traj.theta.items()}, traj.loss.detach(),
                      {g: d.detach() for g, d in traj.grads.items()}, detach_state(traj.state), traj.step)
