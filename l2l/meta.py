"""Meta-training m_φ by truncated backpropagation through time (paper, section 2).

The meta-loss of one optimizee run of `horizon` steps is

    L(φ) = E_f [ Σ_{t=1..T} w_t f(θ_t) ],   w_t = 1,

estimated on problems drawn from a family. The run is cut into unrolls of `unroll` steps: after each
unroll the sum of its losses (mean over instances) is backpropagated into φ once, Adam takes one
meta-step on the clipped meta-gradient, and θ, ∇ and the LSTM state are detached before the next unroll
resumes from where this one stopped. After every epoch φ is frozen and scored on fixed validation problems
(the same meta-loss, summed over the whole horizon); the best φ is kept and checkpointed (early stopping).

Two options beyond the paper, both off by default (used by the second recipe, l2l.general):
- `curriculum`: training runs lengthen in stages (Chen et al. 2020): epoch by epoch the horizon of the training
  runs follows the stages (horizon, epochs), then `horizon`; validation always runs `horizon` steps.
- `meta_loss="log_ratio"` (Wichrowska et al. 2017): each unroll backpropagates
  Σ_t mean_i [log f_i(θ_t) − log f_i(θ_0)] instead of Σ_t mean_i f_i(θ_t), so every problem weighs the same
  whatever the scale of its loss. Only the meta-gradient changes: the fault checks, History.train_loss and
  validation still use the losses themselves.

Faults: an unroll whose meta-loss or meta-gradient is not finite, or whose optimizee diverges, takes no
meta-step (φ and Adam untouched); its run is abandoned and counted, and too many in a row stop training.
With `state_path`, the whole run is saved after every epoch, on Ctrl-C and when a time budget pauses it (before
any problem), and resumes exactly from there.

Under torch.distributed (torchrun), W processes train one φ together: see l2l.distributed. One meta-step then
averages the meta-gradients of W·meta_batch problems, and `problems_per_epoch` counts the problems of all ranks.
"""
from __future__ import annotations

import copy
import datetime
import math
import numbers
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import distributed
from .book import display_path  # noqa: F401  (re-exported: chapters and the CLI print paths through it)
from .checkpoint import save_optimizer
from .evaluate import final_loss, rollout, run_problems
from .problems.batch import MetaBatch
from .training_state import (capture, check_resumable, describe_family, load_state, restore, save_state,
                             sweep_orphans)
from .unroll import cut, start, unroll

VAL_SEED_OFFSET = 1_000_003  # validation problems never coincide with training problems of the same seed
VAL_METRICS = ("summed", "final")
META_LOSSES = ("sum", "log_ratio")
LOG_EPS = 1e-12  # the log-ratio meta-loss takes log max(f, LOG_EPS)


def check_seed(seed, name: str = "seed") -> int:
    """A seed must be a non-negative integer; anything else is a one-line error."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**62:
        raise ValueError(f"{name} must be a non-negative integer (e.g. 0), got {seed!r} ({type(seed).__name__})")
    return int(seed)


@dataclass(frozen=True)
class MetaTrainConfig:
    horizon: int = 100  # optimizee steps per run (paper: 100)
    unroll: int = 20  # truncation length (paper: 20)
    epochs: int = 100
    problems_per_epoch: int = 20
    meta_lr: float = 1e-3  # Adam on φ (official code: 1e-3)
    clip: float = 1.0  # max global norm of the meta-gradient
    second_order: bool = False  # keep ∂∇_t/∂φ (the paper drops it)
    n_val: int = 10  # validation problems per epoch
    # how φ is scored on the validation problems: "summed" (the meta-loss, Σ_t f(θ_t) on minibatches) or "final"
    # (the paper's criterion: each network's loss at step T, on a fixed evaluation batch where the problem has one)
    val_metric: str = "summed"
    val_every: int = 1  # validate (and early-stop) after every val_every epochs, and after the last
    max_bad_in_row: int = 20  # abandoned runs (non-finite or diverged) tolerated in a row before stopping
    # an optimizee whose mean loss exceeds this × f(θ_0) within a run has diverged (None: never). An untrained
    # quadratics LSTM peaks near 1e4 × f(θ_0), so 1e6 only catches real blow-ups.
    diverge_factor: float | None = 1e6
    # problems run side by side through one LSTM call per layer (l2l.problems.MetaBatch): one meta-step
    # averages their meta-gradients. For GPUs; on 2 CPU cores it is no faster (benchmarks/RESULTS.md)
    meta_batch: int = 1
    seed: int = 0
    # horizon curriculum: stages (horizon, epochs) in order; training runs of epoch e have the horizon of e's stage,
    # and epochs after the stages (all of them when empty) have `horizon`. Validation always runs `horizon` steps,
    # so make it the final horizon: then scores compare across epochs. Stored as a tuple of (int, int) tuples.
    curriculum: tuple[tuple[int, int], ...] = ()
    # what an unroll backpropagates: "sum" Σ_t mean_i f_i(θ_t) (the paper), or "log_ratio"
    # Σ_t mean_i [log f_i(θ_t) − log f_i(θ_0)] (Wichrowska et al. 2017; see log_ratio_meta_loss)
    meta_loss: str = "sum"

    def __post_init__(self):
        if self.unroll < 1 or self.horizon < 1 or self.horizon % self.unroll:
            raise ValueError(f"horizon ({self.horizon}) must be a positive multiple of unroll ({self.unroll})")
        object.__setattr__(self, "curriculum", self._stages())
        for name in ("epochs", "problems_per_epoch", "n_val", "max_bad_in_row", "meta_batch", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"MetaTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.problems_per_epoch % self.meta_batch:
            raise ValueError(f"problems_per_epoch ({self.problems_per_epoch}) must be a multiple of meta_batch "
                             f"({self.meta_batch})")
        if self.val_metric not in VAL_METRICS:
            raise ValueError(f"val_metric must be one of {', '.join(VAL_METRICS)}, got {self.val_metric!r}")
        if not (self.meta_lr > 0 and self.clip > 0):
            raise ValueError(f"meta_lr and clip must be positive, got {self.meta_lr}, {self.clip}")
        if self.diverge_factor is not None and not self.diverge_factor > 1:
            raise ValueError(f"diverge_factor must be > 1 (or None to disable), got {self.diverge_factor}")
        if self.meta_loss not in META_LOSSES:
            raise ValueError(f"meta_loss must be one of {', '.join(META_LOSSES)}, got {self.meta_loss!r}")
        object.__setattr__(self, "seed", check_seed(self.seed, "MetaTrainConfig.seed"))

    def _stages(self) -> tuple[tuple[int, int], ...]:
        """The curriculum checked, as tuples (a config read back from JSON or a saved state may hold lists)."""
        stages = self.curriculum
        ok = isinstance(stages, (tuple, list)) and all(
            isinstance(s, (tuple, list)) and len(s) == 2
            and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= 1 for x in s) for s in stages)
        if not ok:
            raise ValueError(f"MetaTrainConfig.curriculum must be stages (horizon, epochs) of positive integers, "
                             f"got {stages!r}")
        stages = tuple((int(h), int(e)) for h, e in stages)
        if any(h % self.unroll for h, _ in stages):
            raise ValueError(f"every curriculum horizon must be a multiple of unroll ({self.unroll}), got "
                             f"{[h for h, _ in stages]}")
        if sum(e for _, e in stages) > self.epochs:
            raise ValueError(f"the curriculum's stages last {sum(e for _, e in stages)} epochs, more than epochs "
                             f"({self.epochs})")
        return stages

    def horizon_at(self, epoch: int) -> int:
        """The horizon of the training runs of (1-based) `epoch`: its curriculum stage's, or `horizon` after them."""
        done = 0
        for horizon, epochs in self.curriculum:
            done += epochs
            if epoch <= done:
                return horizon
        return self.horizon


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)  # mean Σ_t f(θ_t) per unroll, per epoch (any meta_loss)
    # one entry per validation, the first before training: the epoch, the optimizee steps of meta-training done
    # by then, and both scores; val_loss is the one φ is selected by (cfg.val_metric)
    val_epochs: list[int] = field(default_factory=list)
    val_steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_final: list[float] = field(default_factory=list)
    val_summed: list[float] = field(default_factory=list)
    best_epoch: int = 0
    skipped_unrolls: int = 0  # optimizee runs abandoned on a non-finite or divergent unroll
    epochs_done: int = 0
    optimizee_steps: int = 0  # optimizee steps of meta-training done (skipped runs count the steps they took)
    wall_time_s: float = 0.0
    # one entry per call of meta_train that did some work: when, which epochs, on what (a run made in stages)
    stages: list[dict] = field(default_factory=list)

    @property
    def best_val(self) -> float:
        return self.val_loss[self.val_epochs.index(self.best_epoch)]

    def complete(self, cfg: "MetaTrainConfig") -> bool:
        return self.epochs_done >= cfg.epochs


def validation_scores(optimizer, family, cfg: MetaTrainConfig, group=None) -> dict[str, float]:
    """Both validation scores, means over cfg.n_val validation problems: "summed" Σ_{t=1..T} f(θ_t) (the
    meta-loss the training minimises) and "final" f(θ_T) (see final_loss). Non-finite scores become inf.
    With a distributed `group` (world > 1), rank r runs the problems r, r + W, ... and the sums are all-reduced."""
    if group is not None:
        return split_validation_scores(optimizer, family, cfg, group)
    curves, finals = run_problems(optimizer, family, steps=cfg.horizon, n_problems=cfg.n_val,
                                  seed=cfg.seed + VAL_SEED_OFFSET, final_metric=final_loss)
    scores = {"summed": curves[:, 1:].sum(1).mean().item(), "final": torch.cat(finals).mean().item()}
    return {k: v if math.isfinite(v) else math.inf for k, v in scores.items()}


def split_validation_scores(optimizer, family, cfg: MetaTrainConfig, group) -> dict[str, float]:
    """validation_scores over W ranks: the same problems (every rank draws them all, in order, and runs its share)."""
    generator = torch.Generator().manual_seed(cfg.seed + VAL_SEED_OFFSET)
    sums = torch.zeros(4, dtype=torch.float64)  # Σ summed loss, curves, Σ final loss, finals
    for j in range(cfg.n_val):
        problem = family.sample(generator)  # a problem's minibatches come from its own generator
        if j % group.world != group.rank:
            continue
        curve, theta = rollout(optimizer, problem, cfg.horizon)
        final = final_loss(problem, theta).double()
        sums += torch.tensor([curve[:, 1:].double().sum().item(), curve.shape[0], final.sum().item(), final.numel()],
                             dtype=torch.float64)
    sums = group.all_reduce_sum(sums, "validation").tolist()
    scores = {"summed": sums[0] / sums[1], "final": sums[2] / sums[3]}
    return {k: v if math.isfinite(v) else math.inf for k, v in scores.items()}


def validation_score(optimizer, family, cfg: MetaTrainConfig) -> float:
    """The score φ is selected by: validation_scores()[cfg.val_metric]."""
    return validation_scores(optimizer, family, cfg)[cfg.val_metric]


def sample_problem(family, generator, meta_batch: int = 1):
    """The next training problem: one from `family`, or `meta_batch` of them run as one MetaBatch."""
    if meta_batch == 1:
        return family.sample(generator)
    return MetaBatch([family.sample(generator) for _ in range(meta_batch)])


def _fault_check(first, cfg: MetaTrainConfig):
    """The fault test of one optimizee run, from its start: check(value, peak) is None, or why the unroll whose
    meta-loss is `value` and whose highest mean loss is `peak` must be abandoned."""
    initial = first.loss.mean().item()
    limit = cfg.diverge_factor * abs(initial) if cfg.diverge_factor and initial and math.isfinite(initial) else math.inf

    def check(value: float, peak: float) -> str | None:
        if not math.isfinite(value):
            return f"the meta-loss is {value} (the optimizee's loss became non-finite)"
        if peak > limit:
            return (f"the optimizee diverged (mean loss {peak:.3g} > diverge_factor {cfg.diverge_factor:g} x its "
                    f"initial loss {initial:.3g})")
        return None
    return check


def log_ratio_meta_loss(step_losses: list[Tensor], initial: Tensor, eps: float = LOG_EPS) -> Tensor:
    """Σ_t mean_instances [log f_i(θ_t) − log f_i(θ_0)] over one unroll's losses (each [n_instances]).

    initial: f(θ_0) per instance (detached). Summed over the unroll like the paper's meta-loss, so a run's total over
    its unrolls, divided by the horizon, is Wichrowska et al.'s average log ratio. It does not change when the
    objective is multiplied by a constant. Losses must be positive (cross-entropy and ‖Wθ − y‖² are); eps guards
    log 0.
    """
    log0 = initial.detach().clamp_min(eps).log()
    return torch.stack([(l.clamp_min(eps).log() - log0).mean() for l in step_losses]).sum()


def log_ratio_weights(losses: Tensor, eps: float = LOG_EPS) -> Tensor:
    """∂ log max(f_i, eps) / ∂f_i at the (detached) losses f [n_instances]: how log_ratio_meta_loss weighs each
    instance's loss gradient (unroll's instance_weights, which keeps the first-order meta-gradient exact)."""
    with torch.enable_grad():
        f = losses.detach().requires_grad_(True)
        return torch.autograd.grad(f.clamp_min(eps).log().sum(), f)[0]


def _unroll_meta_loss(optimizer, problem, traj, cfg: MetaTrainConfig, check, initial: Tensor):
    """One unroll with its graph: (meta-loss, the value of Σ_t mean f(θ_t), the trajectory, check's fault or None).

    The meta-loss is Σ_t mean f(θ_t) itself, or with cfg.meta_loss="log_ratio" the log ratio to `initial`, f(θ_0)
    per instance."""
    log_ratio = cfg.meta_loss == "log_ratio"
    weights = log_ratio_weights if log_ratio else None
    step_losses, traj = unroll(optimizer, problem, traj, cfg.unroll, track_graph=True, second_order=cfg.second_order,
                               instance_weights=weights)
    curve = torch.stack([l.mean() for l in step_losses])
    meta_loss = curve.sum()
    value, peak = torch.stack([meta_loss.detach(), curve.detach().max()]).tolist()
    if log_ratio:
        meta_loss = log_ratio_meta_loss(step_losses, initial)
    return meta_loss, value, traj, check(value, peak)


def train_on_problem(optimizer, problem, meta_opt, cfg: MetaTrainConfig, group=None) -> tuple[list[float], str | None]:
    """One optimizee run of cfg.horizon steps, one meta-step per unroll. Returns (meta-losses, fault).

    fault is None, or why the run was abandoned: the meta-loss is not finite, the optimizee diverged (its
    mean loss passed cfg.diverge_factor × f(θ_0)), or the meta-gradient is not finite. A faulty unroll takes
    no meta-step, so φ and Adam's moments and step count are exactly as the previous unroll left them.
    With a distributed `group` (world > 1) every rank runs its own problem and each meta-step uses the mean of the
    ranks' meta-gradients (and their meta-losses); a fault on any rank abandons every rank's run (see
    l2l.distributed).
    """
    if group is not None:
        return _train_on_problem_together(optimizer, problem, meta_opt, cfg, group)
    params = list(optimizer.parameters())
    traj = start(optimizer, problem)
    check, initial = _fault_check(traj, cfg), traj.loss
    n = cfg.horizon // cfg.unroll
    losses = []
    for k in range(1, n + 1):
        meta_loss, value, traj, fault = _unroll_meta_loss(optimizer, problem, traj, cfg, check, initial)
        if fault:
            return losses, f"unroll {k}/{n}: {fault}"
        meta_opt.zero_grad(set_to_none=True)
        meta_loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        if not torch.isfinite(norm):
            meta_opt.zero_grad(set_to_none=True)  # leave no non-finite gradient behind
            return losses, f"unroll {k}/{n}: the meta-gradient is not finite (norm {norm.item()})"
        meta_opt.step()
        losses.append(value)
        traj = cut(traj)
    return losses, None


def _train_on_problem_together(optimizer, problem, meta_opt, cfg: MetaTrainConfig, group):
    """train_on_problem on W ranks: one all-reduce per unroll carries Σ meta-gradients, Σ meta-losses and the
    ranks' fault flags, so all ranks take the same step or skip together."""
    params = list(optimizer.parameters())
    traj = start(optimizer, problem)
    check, initial = _fault_check(traj, cfg), traj.loss
    n = cfg.horizon // cfg.unroll
    losses = []
    for k in range(1, n + 1):
        meta_loss, value, traj, fault = _unroll_meta_loss(optimizer, problem, traj, cfg, check, initial)
        meta_opt.zero_grad(set_to_none=True)
        if fault is None:
            meta_loss.backward()
        grads = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), device=p.device)
                 for p in params]
        flags = torch.zeros(group.world, dtype=torch.float64, device=grads[0].device)
        flags[group.rank] = fault is not None
        mine = torch.tensor([0.0 if fault else value], dtype=torch.float64, device=flags.device)
        total = group.all_reduce_sum(torch.cat([*(g.double() for g in grads), mine, flags]), f"unroll {k}/{n}")
        faulty = [r for r, f in enumerate(total[-group.world:].tolist()) if f]
        if faulty:
            meta_opt.zero_grad(set_to_none=True)
            why = f"; rank {group.rank}: {fault}" if fault else ""
            return losses, f"unroll {k}/{n}: rank {', '.join(map(str, faulty))} faulted, every rank skipped it{why}"
        mean = total[:-group.world - 1] / group.world
        for p, g in zip(params, mean.split([p.numel() for p in params])):
            p.grad = g.view_as(p).to(p.dtype)
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)  # the same mean gradient on every rank
        if not torch.isfinite(norm):
            meta_opt.zero_grad(set_to_none=True)
            return losses, f"unroll {k}/{n}: the mean meta-gradient of the ranks is not finite (norm {norm.item()})"
        meta_opt.step()
        losses.append(total[-group.world - 1].item() / group.world)
        traj = cut(traj)
    return losses, None


def meta_train(optimizer, family, cfg: MetaTrainConfig, val_family=None, checkpoint=None, info: dict | None = None,
               progress: bool = True, callback=None, *, state_path=None, max_minutes: float | None = None,
               stop_when=None) -> History:
    """Meta-train `optimizer` (an LSTMOptimizer) in place on problems from `family`; returns the History.

    The training runs of epoch e last cfg.horizon_at(e) steps (cfg.horizon unless cfg has a curriculum); validation
    runs last cfg.horizon steps.

    On return the optimizer holds the best φ found on the validation problems (from `val_family`,
    default `family`). checkpoint: path where the best φ is saved with cfg and `info` whenever it improves.
    callback(epoch, history) runs after every epoch.
    state_path: file for the full training state (see l2l.training_state), written atomically after every
    epoch and when interrupted (Ctrl-C). If it exists, training resumes from it, and on the CPU ends with the
    same φ and History as an uninterrupted run, bit for bit; its config, architecture and families must match
    (only `epochs` may grow, to extend a finished run). A finished run is loaded, not repeated.
    max_minutes: a time budget for this call; when it is spent, training stops before the next problem (the next
    epoch under torch.distributed) with its state saved (needs state_path), and `history.complete(cfg)` is False:
    call again to continue, from that very problem.
    stop_when: instead of max_minutes, a function checked where max_minutes is; True pauses the same way.
    Every call that trains records a stage in `history.stages`; the state saved during a call holds that stage as
    it stands, marked `open`, so that a process killed mid-call still leaves its stage in the run record.
    Under torch.distributed (a process group of W > 1 ranks, see l2l.distributed) every rank calls meta_train with
    the same arguments: each draws its own training problems, one meta-step averages all ranks' meta-gradients,
    `problems_per_epoch` must be a multiple of meta_batch × W, and only rank 0 reads and writes state_path and
    checkpoint. A state resumes only with the world size that saved it (one-line error otherwise).
    """
    group = distributed.current()  # None: a plain single-process run
    par = group if group is not None and group.world > 1 else None  # collectives needed
    rank, world = (group.rank, group.world) if group is not None else (0, 1)
    lead = rank == 0  # prints, shows the progress bar
    if (max_minutes is not None or stop_when is not None) and state_path is None and lead:
        raise ValueError("max_minutes needs a state_path: a paused run must be saved to be continued")
    if cfg.problems_per_epoch % (cfg.meta_batch * world):
        raise ValueError(f"problems_per_epoch ({cfg.problems_per_epoch}) must be a multiple of meta_batch x world "
                         f"size ({cfg.meta_batch} x {world}): every meta-step takes one meta-batch from every rank")
    val_family = val_family or family
    generator = distributed.train_generator(cfg.seed, rank)  # rank 0: torch.Generator().manual_seed(cfg.seed)
    meta_opt = torch.optim.Adam(optimizer.parameters(), lr=cfg.meta_lr)
    history, t0, spent = History(), time.perf_counter(), 0.0
    meta = {"config": asdict(cfg), **(info or {})}
    best = [None]  # the best φ so far (a state_dict), set by validate
    fixed = {"config": meta["config"], "architecture": optimizer.describe(),
             "families": {"train": describe_family(family), "validation": describe_family(val_family)}}
    epoch0, problem0, epoch_losses, bad_in_row, snap = 1, 0, [], 0, None
    P, step = cfg.problems_per_epoch, cfg.meta_batch * world  # problems per epoch and per meta-step, all ranks
    # saving: snapshots are taken (on every rank, as they gather the ranks' generators); writes: this process saves
    saving = state_path is not None if par is None else par.broadcast_object(state_path is not None, "start")
    writes = distributed.may_write(group, state_path)

    def validate(epoch):
        scores = validation_scores(optimizer, val_family, cfg, par)
        history.val_epochs.append(epoch)
        history.val_steps.append(history.optimizee_steps)
        history.val_final.append(scores["final"])
        history.val_summed.append(scores["summed"])
        history.val_loss.append(scores[cfg.val_metric])
        if epoch == 0 or history.val_loss[-1] < history.best_val:
            history.best_epoch = epoch
            best[0] = copy.deepcopy(optimizer.state_dict())
            if distributed.may_write(group, checkpoint):
                save_optimizer(optimizer, checkpoint, epoch=epoch, val_loss=history.val_loss[-1],
                               val_metric=cfg.val_metric, optimizee_steps=history.optimizee_steps, **meta)

    stage, closed, trained = None, False, False  # this call's stage; closed once recorded; whether it trained
    resume_at = None  # (epoch, problem) where a pause within an epoch stopped
    stages_before = len(history.stages)

    def stage_record(problem):  # this call's stage as it stands now, `problem` problems into the next epoch
        record = {**stage, "ended": utc_now(), "to_epoch": history.epochs_done,
                  "optimizee_steps": history.optimizee_steps, "wall_time_s": round(time.perf_counter() - t0, 1)}
        if problem:  # ended within epoch to_epoch + 1, after this many of its problems
            record["to_problem"] = problem
        return record

    def snapshot(epoch, problem):  # the run as it stands before `problem` (0-based) of `epoch`
        hist = asdict(replace(history, wall_time_s=spent + time.perf_counter() - t0))
        if trained and not closed:
            # a stage still open is saved as it stands, marked open: if the process is killed before it closes
            # the stage (power cut, session end), the run record still shows what that stage did up to this save
            hist["stages"] = hist["stages"] + [{**stage_record(problem), "open": True}]
        ranks = {}
        if par is not None:  # every rank's random streams, so that a resume continues each of them
            ranks = {"world_size": world,
                     "rank_generators": par.gather_bytes(generator.get_state(), "saving the training state"),
                     "rank_torch_rng": par.gather_bytes(torch.get_rng_state(), "saving the training state")}
        return capture(optimizer, meta_opt, generator, **fixed, epoch=epoch, problem=problem, history=hist,
                       best_phi=best[0], epoch_losses=list(epoch_losses), bad_in_row=bad_in_row, **ranks)

    def load():  # the saved state to resume from, or None
        if state_path is None:
            return None
        sweep_orphans(state_path)  # this run is now the file's only writer
        if not Path(state_path).exists():
            return None
        saved = load_state(state_path)
        check_resumable(saved, state_path, **fixed, epochs=cfg.epochs, defaults=asdict(MetaTrainConfig()))
        if saved.get("world_size", 1) != world:
            raise ValueError(f"{state_path} was saved by a run on {saved.get('world_size', 1)} process(es), and this "
                             f"run has world size {world}: resume it with the same number of processes (each rank "
                             "continues its own problem stream), or start afresh (--fresh)")
        return saved

    if par is None:
        saved = load()
    else:  # rank 0 reads the state; every rank gets it, or the same one-line error
        payload = None
        if par.rank == 0:
            try:
                payload = ("state", load())
            except (ValueError, OSError) as e:  # every rank stops with rank 0's one line
                payload = ("error", str(e))
        kind, saved = par.broadcast_object(payload, "loading the training state")
        if kind == "error":
            raise ValueError(saved)
    if group is not None and lead and progress:
        tqdm.write(f"world size {world}: meta-training on {world} process(es) ({distributed.backend()}); rank 0 writes "
                   "the state and checkpoints")
    if saved is not None:
        restore(saved, optimizer, meta_opt, generator)
        if par is not None:
            generator.set_state(saved["rank_generators"][rank])
            torch.set_rng_state(saved["rank_torch_rng"][rank])
        history, best[0], spent = History(**saved["history"]), saved["best_phi"], saved["history"]["wall_time_s"]
        epoch0, problem0, epoch_losses, bad_in_row = (saved[k] for k in ("epoch", "problem", "epoch_losses",
                                                                          "bad_in_row"))
        snap = saved
        if progress and lead and epoch0 <= cfg.epochs:
            tqdm.write(f"resuming meta-training from {display_path(state_path)} at epoch {epoch0} "
                       f"({problem0}/{P} problems done)")
    else:
        if par is not None:  # every rank starts from rank 0's φ₀
            par.broadcast_tensors(optimizer.state_dict().values(), "sharing φ₀")
        validate(0)
        if saving:
            snap = snapshot(1, 0)
            if writes:
                save_state(state_path, snap)
    stage = {"started": utc_now(), "from_epoch": epoch0, "device": str(next(optimizer.parameters()).device),
             "threads": torch.get_num_threads()}
    if problem0:  # resumed within an epoch, after this many of its problems
        stage["from_problem"] = problem0
    if group is not None:
        stage["world_size"] = world
    if stop_when is None and max_minutes is not None:
        deadline = time.perf_counter() + 60 * max_minutes
        stop_when = lambda: time.perf_counter() > deadline  # noqa: E731
    bar = tqdm(total=cfg.epochs * P, initial=min((epoch0 - 1) * P + problem0, cfg.epochs * P),
               desc="meta-training", disable=not progress or not lead or epoch0 > cfg.epochs)
    last_fault = None
    try:
        for epoch in range(epoch0, cfg.epochs + 1):
            if par is not None:  # ranks pause at epoch boundaries only, and rank 0's clock decides for everyone
                if par.broadcast_object(bool(stop_when is not None and stop_when()), "checking the time budget"):
                    break
            run_cfg = replace(cfg, horizon=cfg.horizon_at(epoch)) if cfg.curriculum else cfg  # this epoch's runs
            for i in range(problem0 if epoch == epoch0 else 0, P, step):
                if par is None and stop_when is not None and stop_when():
                    # a single process pauses before any problem: its state there resumes exactly, so a time
                    # budget is kept to one problem's time even when epochs are long (neural art: ~25 minutes)
                    resume_at = (epoch, i)
                    break
                if state_path is not None and par is None:  # (ranks snapshot at epoch boundaries only)
                    snap = snapshot(epoch, i)
                losses, fault = train_on_problem(optimizer, sample_problem(family, generator, cfg.meta_batch),
                                                 meta_opt, run_cfg, par)
                trained = True
                epoch_losses += losses
                history.optimizee_steps += (len(losses) + (fault is not None)) * cfg.unroll * step
                history.skipped_unrolls += int(fault is not None)
                bad_in_row = bad_in_row + 1 if fault else 0
                last_fault = f"epoch {epoch}, problem {i + 1}/{P}, {fault}" if fault else last_fault
                if bad_in_row >= cfg.max_bad_in_row:
                    raise RuntimeError(
                        f"meta-training stopped: {bad_in_row} optimizee runs in a row were abandoned, the last at "
                        f"{last_fault}. Likely cause: the learned updates are too large for this problem; lower "
                        "meta_lr or the LSTM's output_scale, and check that the problem's loss is finite at θ_0")
                bar.update(step)
            if resume_at is not None:
                break
            if saving:
                snap = snapshot(epoch, P)
            history.train_loss.append(sum(epoch_losses) / max(len(epoch_losses), 1))
            history.epochs_done = epoch
            trained = True  # (also when resumed after the epoch's last problem, e.g. a Ctrl-C in validation)
            epoch_losses = []
            if epoch % cfg.val_every == 0 or epoch == cfg.epochs:
                validate(epoch)
            if saving:
                snap = snapshot(epoch + 1, 0)
                if writes:
                    save_state(state_path, snap)
            bar.set_postfix(train=f"{history.train_loss[-1]:.4g}", val=f"{history.val_loss[-1]:.4g}",
                            best=f"{history.best_val:.4g}@{history.best_epoch}")
            if callback is not None:
                callback(epoch, history)
    except KeyboardInterrupt:
        if snap is None or not writes:
            raise
        if len(snap["history"]["stages"]) > stages_before:  # this call's stage, ended by Ctrl-C: not left open
            snap["history"]["stages"][-1].pop("open")
        save_state(state_path, snap)
        raise KeyboardInterrupt(f"meta-training interrupted; its state at epoch {snap['epoch']} ({snap['problem']}/{P} "
                                f"problems done) is saved in {display_path(state_path)}: run the same command "
                                "again (or call meta_train with the same arguments) to resume") from None
    finally:
        bar.close()
    if trained:  # record this call's stage in the saved state too
        history.stages.append(stage_record(resume_at[1] if resume_at else 0))
        closed = True
        if saving:
            snap = snapshot(*(resume_at or (history.epochs_done + 1, 0)))
            if writes:
                save_state(state_path, snap)
    optimizer.load_state_dict(best[0])
    history.wall_time_s = spent + time.perf_counter() - t0
    return history


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
