"""CIFAR-10, kept resident on the device as uint8 tensors, and the chapter's fixed label subsets.

Two layouts under the data root (env L2L_DATA) are accepted, the lossless one first:

- torchvision's `CIFAR10` root: `<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}` (the official python
  pickles; with L2L_DOWNLOAD=1, or `download=True`, torchvision fetches them);
- an image-folder tree: `<root>/CIFAR-10-images/{train,test}/<class>/*.jpg|png`, one folder per class named as
  torchvision names them (the offline copy in this repository's CI is this tree, as lossy JPEG: SOURCES.md).

Either is decoded once into uint8 [N, 3, 32, 32] images and int64 labels (torchvision's class order) and cached
with safetensors in `cache_dir()`; the loader returns the tensors with a `source` string saying which layout
produced them, so a chapter can print where its figures came from. The image-folder tree is read class by class
(files sorted by name), not in the canonical order; nothing depends on the order, since minibatches are random.

Used in: 03_cifar (problems/cnn.py).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from .data import cache_dir, data_root, load_or_decode
from .fileio import atomic_write

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")  # torchvision
SPLITS = ("train", "test")
SIZES = {"train": 50_000, "test": 10_000}  # of the complete dataset; a tree may hold fewer (tests, subsets)
PICKLES = "cifar-10-batches-py"
IMAGE_TREE = "CIFAR-10-images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Per-channel mean and std of the training images on the [0, 1] scale (the usual reference values; the JPEG copy
# matches the means to 1e-4 and the stds to 2e-3, SOURCES.md).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

# The label subsets of Figure 7, fixed once. The evaluation classes are the last five in torchvision's order (two
# vehicles, three animals); LSTM-sub is meta-trained only on the first five (also two vehicles, three animals), so
# its meta-training never sees an image of a class it is tested on. CIFAR-2 pairs an animal with a vehicle.
SUBSETS = {
    "CIFAR-10": CLASSES,
    "CIFAR-5": ("dog", "frog", "horse", "ship", "truck"),
    "CIFAR-2": ("dog", "truck"),
    "CIFAR-5 complement": ("airplane", "automobile", "bird", "cat", "deer"),  # LSTM-sub's meta-training labels
}


class CIFAR10Data(NamedTuple):
    images: Tensor  # uint8 [N, 3, 32, 32]
    labels: Tensor  # int64 [N], indices into CLASSES
    source: str  # which layout produced the tensors, and where under the data root


_LOADED: dict[tuple, CIFAR10Data] = {}  # (root, split, device) -> data already on the device


def subset_classes(subset) -> tuple[str, ...]:
    """The classes of a named subset ("CIFAR-5") or of an explicit tuple of class names, checked."""
    classes = SUBSETS[subset] if isinstance(subset, str) and subset in SUBSETS else subset
    if isinstance(classes, str) or not classes:
        raise ValueError(f"unknown CIFAR-10 label subset {subset!r}; use one of {sorted(SUBSETS)} or a tuple of "
                         f"class names from {CLASSES}")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown or len(set(classes)) != len(classes):
        raise ValueError(f"label subset {classes} has unknown or repeated classes {unknown}; classes are {CLASSES}")
    return tuple(classes)


def _tree_files(root: Path, split: str) -> list[list[Path]]:
    """Image files per class (CLASSES order, names sorted) of the tree's `split`; a clear error if a class is empty."""
    files, missing = [], []
    for name in CLASSES:
        folder = root / IMAGE_TREE / split / name
        found = sorted(e.path for e in os.scandir(folder) if e.name.lower().endswith(IMAGE_SUFFIXES)) \
            if folder.is_dir() else []
        if not found:
            missing.append(name)
        files.append([Path(f) for f in found])
    if missing:
        raise FileNotFoundError(f"CIFAR-10 image-folder tree {root / IMAGE_TREE / split} has no images for classes "
                                f"{missing}; expected one folder per class {CLASSES} holding *.jpg or *.png files")
    return files


def _decode_files(paths: list[Path]) -> list[Tensor]:
    """uint8 RGB [3, H, W] per file: torchvision.io (one batched call for the JPEGs, ~4x faster than Pillow) where
    it still decodes (deprecated since torchvision 0.29 in favour of TorchCodec), else Pillow."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

            raw = [read_file(str(p)) for p in paths]
            jpeg = [i for i, p in enumerate(paths) if p.suffix.lower() in (".jpg", ".jpeg")]
            decoded = [None] * len(paths)
            if jpeg:
                for i, img in zip(jpeg, decode_jpeg([raw[i] for i in jpeg], mode=ImageReadMode.RGB)):
                    decoded[i] = img
            return [img if img is not None else decode_image(raw[i], mode=ImageReadMode.RGB)
                    for i, img in enumerate(decoded)]
    except ImportError:
        import numpy as np
        from PIL import Image

        return [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in paths]


def _decode_tree(files: list[list[Path]]) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    for label, paths in enumerate(files):
        decoded = _decode_files(paths)  # one class at a time
        bad = [str(p) for p, img in zip(paths, decoded) if img.shape != (3, 32, 32)]
        if bad:
            raise RuntimeError(f"CIFAR-10 images must be 32x32; {len(bad)} are not, e.g. {bad[0]}")
        images.append(torch.stack(decoded))
        labels.append(torch.full((len(paths),), label, dtype=torch.int64))
    return torch.cat(images).contiguous(), torch.cat(labels)


def _decode_pickles(root: Path, split: str, download: bool) -> tuple[Tensor, Tensor]:
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(str(root), train=split == "train", download=download)
    except Exception as e:  # torchvision checks the md5 of every file and reports "not found or corrupted"
        raise RuntimeError(f"CIFAR-10 {split} split in {root / PICKLES} could not be read ({type(e).__name__}: {e}); "
                           "replace the files with the official python version of CIFAR-10") from e
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # [N, 32, 32, 3] -> [N, 3, 32, 32]
    return images, torch.tensor(ds.targets, dtype=torch.int64)


def _cache_key(parts: list[str]) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _stamp(paths) -> list[str]:
    """Path, size and mtime of every file: another copy or an edited file decodes again."""
    out = []
    for p in paths:
        s = p.stat()
        out.append(f"{p}:{s.st_size}:{s.st_mtime_ns}")
    return out


def _not_found(root: Path, split: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"CIFAR-10 {split} split not found under data root {root}. Accepted layouts: torchvision's CIFAR10 root "
        f"({root / PICKLES}/data_batch_1..5 and test_batch), or an image-folder tree "
        f"({root / IMAGE_TREE}/{{train,test}}/<class>/*.jpg|png with class folders {', '.join(CLASSES)}). "
        "Set L2L_DATA to a folder holding one of them, or on a machine with a network call "
        "load_cifar10(..., download=True) or set L2L_DOWNLOAD=1.")


def load_cifar10(split: str, device: torch.device | str = "cpu", download: bool | None = None) -> CIFAR10Data:
    """CIFAR-10 `split` ("train" or "test") as CIFAR10Data(images uint8 [N, 3, 32, 32], labels int64 [N], source).

    Reads torchvision's pickles if the data root has them, else the image-folder tree. Loaded once per
    (root, split, device) per process; decoded once per machine (safetensors cache in cache_dir()).
    download: let torchvision fetch the pickles when neither layout is there; None reads env L2L_DOWNLOAD == "1".
    Raises FileNotFoundError naming the root and both accepted layouts when neither is there.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown CIFAR-10 split {split!r}; expected one of {SPLITS}")
    device = torch.device(device)
    root = data_root()
    key = (str(root), split, str(device))
    if key in _LOADED:
        return _LOADED[key]
    if download is None:
        download = os.environ.get("L2L_DOWNLOAD") == "1"
    pickles = root / PICKLES
    batch_files = [pickles / f"data_batch_{i}" for i in range(1, 6)] + [pickles / "test_batch"]
    if all(f.is_file() for f in batch_files):
        kind, files = "pickles", batch_files
    elif (root / IMAGE_TREE / split).is_dir():
        kind, per_class = "tree", _tree_files(root, split)
        files = [p for paths in per_class for p in paths]
    elif download:
        _decode_pickles(root, split, download=True)  # fetch now so the cache key sees the files
        kind, files = "pickles", batch_files
    else:
        raise _not_found(root, split)

    if kind == "pickles":
        source = f"torchvision CIFAR10 (python pickles, lossless) in $L2L_DATA/{pickles.relative_to(root)}"
    else:
        formats = sorted({p.suffix.lower().lstrip(".").replace("jpeg", "jpg") for p in files})
        lossy = ", lossy" if "jpg" in formats else ""
        source = f"image-folder tree ({'/'.join(f.upper() for f in formats)}{lossy}) in $L2L_DATA/{IMAGE_TREE}"
    path = cache_dir() / f"cifar10-{split}-{_cache_key([kind, split] + _stamp(files))}.safetensors"
    tensors = load_or_decode(path, lambda images: images.shape[1:] == (3, 32, 32), lambda: (
        _decode_pickles(root, split, False) if kind == "pickles" else _decode_tree(per_class)))
    n = tensors["labels"].shape[0]
    _LOADED[key] = CIFAR10Data(tensors["images"].to(device), tensors["labels"].to(device),
                               f"{source}: {n:,} {split} images")
    return _LOADED[key]
