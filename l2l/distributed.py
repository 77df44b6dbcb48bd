"""Data-parallel meta-training on torch.distributed: W processes, one φ.

Launched by `torchrun --nproc-per-node W -m l2l train CHAPTER` (or any code that calls `meta_train` once a
process group is initialized), every rank runs its own optimizee problems, drawn from a stream derived from
(seed, rank); after each unroll the ranks average their meta-gradients with one all-reduce, so every rank takes
the same clipped Adam step and φ stays identical everywhere. One meta-step of W ranks is thus a meta-batch of W
problems (l2l.problems.MetaBatch) spread over W processes: `problems_per_epoch` counts problems of all ranks
together, so an epoch is the same optimizee work at any world size, done in 1/W of the meta-steps.

The same all-reduce carries each rank's meta-loss and a fault flag: an unroll that one rank must skip (NaN,
Inf, divergence) is skipped by every rank. Validation problems are dealt out across ranks and their scores
summed. Rank 0 alone reads and writes the training state and the checkpoints (it broadcasts a resumed state
to the others); another rank writes only inside its private scratch folder (`private_dir`, what the CLI gives
it as its output folder, deleted at exit).

Failures: every collective has the process group's timeout (`L2L_DIST_TIMEOUT` seconds, default 300). A
collective that fails (a peer's connection closed, or the timeout) becomes a one-line RuntimeError naming the
rank that stopped: each rank's heartbeat thread bumps a counter in the rendezvous store every second, along
with how many collectives its rank has entered, so the survivors can tell a dead rank (its counter stopped)
from a stuck one (alive, behind in collectives).
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 300.0
BEAT_S = 1.0  # heartbeat period
_private: dict[str, Path] = {}  # {"dir": this rank's scratch folder}, rank > 0 under the CLI


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s training problems. Rank 0 draws from `seed` itself, so a run of one process is the
    single-process run; other ranks from a hash of (seed, rank), which no small seed or seed offset meets."""
    if rank == 0:
        return seed
    digest = hashlib.sha256(f"l2l-rank-stream/{seed}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2  # < 2**62, like every l2l seed


def train_generator(seed: int, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(rank_seed(seed, rank))


def launched() -> bool:
    """True in a process started by torchrun (or any launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def timeout_s() -> float:
    text = os.environ.get("L2L_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"L2L_DIST_TIMEOUT must be a positive number of seconds, got {text!r}")
    return value


def init(device: torch.device | str = "cpu") -> "Group | None":
    """Join the process group described by the environment (torchrun's RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT): gloo on the CPU, NCCL on CUDA. Returns the Group, or None when not launched that way."""
    if not launched():
        return None
    device = torch.device(device)
    if device.type == "cuda":  # one GPU per process: NCCL's objects live on the current device
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
    return current()


def current() -> "Group | None":
    """The Group of the initialized default process group, or None (a plain single-process run)."""
    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = Group(dist.get_rank(), dist.get_world_size())
    if group.world > 1:
        Heartbeat.start(group.rank, group.world)
    return group


def backend() -> str:
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else "no process group"


def shutdown() -> None:
    """Leave the process group (after a run, or on its way out with an error); says so to the others first."""
    Heartbeat.stop()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def private_dir() -> Path:
    """This rank's scratch folder, deleted at exit: a rank other than 0 writes its files there, never beside rank
    0's (the CLI gives it as the output folder of ranks > 0)."""
    if "dir" not in _private:
        _private["dir"] = Path(tempfile.mkdtemp(prefix="l2l-rank-"))
        atexit.register(shutil.rmtree, _private["dir"], ignore_errors=True)
    return _private["dir"]


def may_write(group: "Group | None", path) -> bool:
    """Whether this process writes `path`: always without a group and on rank 0; elsewhere only in private_dir."""
    if path is None:
        return False
    if group is None or group.rank == 0:
        return True
    return "dir" in _private and _private["dir"].resolve() in Path(path).resolve().parents


@dataclass(frozen=True)
class Group:
    """This process's place in the default process group, and the few collectives meta-training needs."""

    rank: int
    world: int

    def _comm(self, t: torch.Tensor) -> torch.Tensor:  # NCCL wants CUDA tensors, gloo takes CPU ones
        if dist.get_backend() == "nccl":
            return t.to(torch.device("cuda", torch.cuda.current_device()))
        return t.cpu()

    def all_reduce_sum(self, t: torch.Tensor, what: str) -> torch.Tensor:
        buf = self._comm(t)
        with guarded(self, what):
            dist.all_reduce(buf)
        return buf.to(t.device)

    def broadcast_object(self, obj, what: str):
        """rank 0's `obj` on every rank (pickled: for small things, a training state at most)."""
        box = [obj]
        with guarded(self, what):
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_tensors(self, tensors, what: str) -> None:
        """Overwrite `tensors` in place with rank 0's values."""
        for t in tensors:
            buf = self._comm(t.detach())
            with guarded(self, what):
                dist.broadcast(buf, src=0)
            t.detach().copy_(buf)

    def gather_bytes(self, t: torch.Tensor, what: str) -> list[torch.Tensor]:
        """Every rank's uint8 tensor of the same length (a generator state), in rank order."""
        buf = self._comm(t)
        out = [torch.empty_like(buf) for _ in range(self.world)]
        with guarded(self, what):
            dist.all_gather(out, buf)
        return [o.cpu() for o in out]


class guarded:
    """Run one collective; turn its failure into a one-line RuntimeError naming the rank that stopped."""

    entered = 0  # collectives this process has entered (published by the heartbeat)

    def __init__(self, group: Group, what: str):
        self.group, self.what = group, what

    def __enter__(self):
        guarded.entered += 1

    def __exit__(self, kind, error, tb):
        if error is None or not isinstance(error, Exception):
            return False
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        message = (f"distributed meta-training stopped on rank {self.group.rank} of {self.group.world} during "
                   f"{self.what}: {diagnose(self.group)} ({type(error).__name__}: {first})")
        Heartbeat.stop(left=True)
        raise RuntimeError(message) from None


def diagnose(group: Group) -> str:
    """Which ranks are gone or stuck, from their heartbeats in the rendezvous store."""
    store = Heartbeat.store
    if store is None:
        return "another rank stopped"
    try:
        first = Heartbeat.read_all(group.world)
        time.sleep(3 * BEAT_S)
        second = Heartbeat.read_all(group.world)
    except Exception:  # noqa: BLE001 - a store that cannot be reached is the answer
        return "rank 0 is gone (the rendezvous store cannot be reached)"
    others = [r for r in range(group.world) if r != group.rank]
    left = [r for r in others if second[r][2]]
    dead = [r for r in others if r not in left and second[r][0] == first[r][0]]
    if dead:
        return f"rank {', '.join(map(str, dead))} stopped responding (died or was killed)"
    mine = guarded.entered
    stuck = [r for r in others if r not in left and second[r][1] < mine]
    if stuck:
        return f"rank {', '.join(map(str, stuck))} is alive but did not reach this collective within the timeout"
    if left:
        return f"rank {', '.join(map(str, left))} stopped with an error (see its own message)"
    return "a collective failed while every rank was alive"


class Heartbeat:
    """A daemon thread per rank: every BEAT_S it writes '<beats> <collectives entered>' to l2l/beat/<rank>."""

    store = None
    _thread: threading.Thread | None = None
    _stop = threading.Event()
    _rank = 0

    @classmethod
    def start(cls, rank: int, world: int) -> None:
        if cls._thread is not None and cls._thread.is_alive():
            return
        try:
            cls.store = dist.distributed_c10d._get_default_store()
        except Exception:  # noqa: BLE001 - no store: failures are still one line, without naming the rank
            cls.store = None
            return
        cls._rank, cls._stop = rank, threading.Event()
        cls._beat(0)
        cls._thread = threading.Thread(target=cls._run, name="l2l-heartbeat", daemon=True)
        cls._thread.start()

    @classmethod
    def _beat(cls, n: int) -> None:
        cls.store.set(f"l2l/beat/{cls._rank}", f"{n} {guarded.entered}")

    @classmethod
    def _run(cls) -> None:
        n, stop = 0, cls._stop
        while not stop.wait(BEAT_S):
            n += 1
            try:
                cls._beat(n)
            except Exception:  # noqa: BLE001 - the store is gone; the next collective will say so
                return

    @classmethod
    def read_all(cls, world: int) -> list[tuple[int, int, bool]]:
        """(beats, collectives entered, left deliberately) of every rank."""
        out = []
        for r in range(world):
            beats, entered = (int(x) for x in cls.store.get(f"l2l/beat/{r}").decode().split())
            out.append((beats, entered, cls.store.check([f"l2l/left/{r}"])))
        return out

    @classmethod
    def stop(cls, left: bool = True) -> None:
        """Stop beating; with `left`, tell the others this rank stopped on purpose (not a crash)."""
        cls._stop.set()
        if cls._thread is not None:
            cls._thread.join(timeout=2 * BEAT_S)
            cls._thread = None
        if left and cls.store is not None:
            try:
                cls.store.set(f"l2l/left/{cls._rank}", "1")
            except Exception:  # noqa: BLE001
                pass
