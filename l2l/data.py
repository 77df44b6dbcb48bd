"""Datasets through torchvision, kept resident on the device as uint8 tensors.

Optimizees sample a minibatch at every step of an unroll, so the whole dataset lives on the device and a
batch is one index gather: no DataLoader, no host round trip. Decoding goes through torchvision (so users
with a network get the usual `download=True`) once; the decoded uint8 tensors are cached with safetensors
in `cache_dir()`, because the data root may be read-only (CI's ../shared/data is).

Environment: L2L_DATA (data root, default ./data), L2L_CACHE (default ~/.cache/l2l),
L2L_DOWNLOAD=1 (let torchvision download what is missing).

Used in: 02_mnist (problems/mlp.py).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor

from .fileio import atomic_write

SPLITS = ("train", "test")
META_TRAIN_SPLIT = "train"  # optimizees are trained (and the LSTM meta-trained) on MNIST's training images
TEST_SPLIT = "test"  # held-out images: test accuracy of an optimizee after its run

_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_MNIST_SIZES = {"train": 60_000, "test": 10_000}
_LOADED: dict[tuple, tuple[Tensor, Tensor]] = {}  # (root, split, device) -> tensors already on the device


def data_root() -> Path:
    """The dataset root (env L2L_DATA, default ./data), absolute so error messages say where we looked."""
    return Path(os.environ.get("L2L_DATA", "data")).expanduser().resolve()


def cache_dir() -> Path:
    """Where decoded tensors are cached (env L2L_CACHE, default ~/.cache/l2l)."""
    return Path(os.environ.get("L2L_CACHE", "~/.cache/l2l")).expanduser()


def _cache_file(root: Path, split: str) -> Path:
    """Cache name keyed on the raw files' path, size and mtime, so another copy or an edited file re-decodes."""
    stats = [(root / "MNIST" / "raw" / n).stat() for n in _MNIST_FILES[split]]
    stamp = [str(root)] + [f"{s.st_size}:{s.st_mtime_ns}" for s in stats]
    return cache_dir() / f"mnist-{split}-{hashlib.sha256('|'.join(stamp).encode()).hexdigest()[:16]}.safetensors"


def _decode(root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(str(root), train=split == "train", download=download)
        images, labels = ds.data.to(torch.uint8).contiguous(), ds.targets.to(torch.int64).contiguous()
    except Exception as e:  # a truncated or foreign file fails deep inside torchvision's idx parser
        hint = ("the download failed (no network?)" if download else
                f"the files in {root / 'MNIST' / 'raw'} look corrupt or truncated: replace them with the official ones")
        raise RuntimeError(f"MNIST {split} split under data root {root} could not be read "
                           f"({type(e).__name__}: {e}); {hint}") from e
    n = _MNIST_SIZES[split]
    if images.shape != (n, 28, 28) or labels.shape != (n,) or labels.min() < 0 or labels.max() > 9:
        raise RuntimeError(f"MNIST {split} split under {root} has unexpected contents (images {tuple(images.shape)}, "
                           f"labels {tuple(labels.shape)}); expected {n} 28x28 images with labels 0-9")
    return images, labels


def save_cache(tensors: dict[str, Tensor], path: Path) -> None:
    """Atomic, so a crash or a parallel run never leaves half a cache file; an unwritable cache only costs a
    re-decode next time."""
    from safetensors.torch import save_file

    try:
        atomic_write(path, lambda tmp: save_file(tensors, tmp))
    except OSError:
        pass


def load_mnist(split: str, device: torch.device | str = "cpu",
               download: bool | None = None) -> tuple[Tensor, Tensor]:
    """MNIST `split` ("train" or "test") as (images uint8 [N, 28, 28], labels int64 [N]) on `device`.

    Loaded once per (root, split, device) per process; decoded once per machine (safetensors cache).
    download: let torchvision fetch missing files into the data root; None reads env L2L_DOWNLOAD == "1".
    Raises FileNotFoundError naming the searched root when the files are missing and download is off.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {SPLITS}")
    device = torch.device(device)
    root = data_root()
    key = (str(root), split, str(device))
    if key in _LOADED:
        return _LOADED[key]
    if download is None:
        download = os.environ.get("L2L_DOWNLOAD") == "1"
    raw = root / "MNIST" / "raw"
    # torchvision insists on all four files even to read one split, so check all four
    missing = [n for names in _MNIST_FILES.values() for n in names if not (raw / n).is_file()]
    if missing and not download:
        raise FileNotFoundError(
            f"MNIST {split} split not found: searched data root {root} for {raw}/{{{','.join(missing)}}}. "
            "Set L2L_DATA to a folder that contains MNIST/raw/ in torchvision's layout (the four uncompressed "
            "idx files), or on a machine with a network call load_mnist(..., download=True) or set L2L_DOWNLOAD=1.")
    if missing:
        _decode(root, split, download=True)  # fetch now so the cache key sees the files
    n = _MNIST_SIZES[split]
    tensors = load_or_decode(_cache_file(root, split), lambda images: images.shape == (n, 28, 28),
                             lambda: _decode(root, split, download=False))
    _LOADED[key] = (tensors["images"].to(device), tensors["labels"].to(device))
    return _LOADED[key]


def load_or_decode(path: Path, valid, decode) -> dict[str, Tensor]:
    """{"images", "labels"} from the cache file at `path` when it holds them and valid(images) is true; else
    decode() → (images, labels), written to `path` for next time. Shared by the MNIST and CIFAR-10 loaders."""
    tensors = None
    if path.is_file():
        from safetensors.torch import load_file
        try:
            tensors = load_file(str(path))
        except Exception:
            tensors = None  # a damaged cache file is derived data: decode again and overwrite it
    if tensors is None or set(tensors) != {"images", "labels"} or not valid(tensors["images"]):
        images, labels = decode()
        tensors = {"images": images, "labels": labels}
        save_cache(tensors, path)
    return tensors


def load_image(path) -> Tensor:
    """The image file at `path` as uint8 RGB [3, H, W] (any format Pillow reads; grayscale is expanded).

    Raises FileNotFoundError for a missing file and a one-line ValueError naming the file when it does not
    decode (truncated, corrupted, or not an image). Pillow rather than torchvision.io, whose decoders are
    deprecated since torchvision 0.29; torchvision depends on Pillow anyway. Used in: 04_neural_art.
    """
    import numpy as np
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path.resolve()}")
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))  # convert() decodes the whole file, so truncation shows here
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path} does not decode as an image (truncated, corrupted or not an image file): "
                         f"{reason}; replace or remove the file") from None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()
