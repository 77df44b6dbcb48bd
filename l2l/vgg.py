"""Frozen VGG-19 features for neural art (paper, section 3.4; Gatys et al. 2016).

Only the layers a loss needs are run: the network is cut after its deepest requested layer (relu5_1 for
Gatys' layers), kept in eval mode on the device, and its weights never require gradients, so the only
gradient of a forward pass is the one with respect to the input image.

Two sources of the same ImageNet weights, each with its own input preprocessing. Both take RGB images in
[0, 1], shape [B, 3, H, W]; the extractor converts them itself:

    "torchvision"  VGG19_Weights.IMAGENET1K_V1 (downloaded for users with a network):
                   RGB, (x − mean) / std with ImageNet's mean and std
    "h5"           the original (Caffe/Keras) conv weights in <L2L_DATA>/weights/
                   vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5: BGR, 0–255, minus the BGR mean
                   [103.939, 116.779, 123.68], no division by a std

The h5 kernels are stored (3, 3, in, out) and become PyTorch's (out, in, 3, 3) by a transpose, with no
spatial flip; their first layer reads BGR channels, which is why that source feeds BGR rather than
reordering the kernels. Converted tensors are cached once per machine as fp32 safetensors in `cache_dir()`.

Used in: 04_neural_art (problems/style.py).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from .data import cache_dir, data_root, save_cache

H5_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
SOURCES = ("torchvision", "h5")

# VGG-19's conv layers in order, (name, in, out); a 2×2 max-pool follows the last conv of each block.
CONVS = [("conv1_1", 3, 64), ("conv1_2", 64, 64),
         ("conv2_1", 64, 128), ("conv2_2", 128, 128),
         ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
         ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512),
         ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512), ("conv5_4", 512, 512)]
# index of each conv in torchvision's vgg19().features (SOURCES.md, section 2)
TORCHVISION_INDEX = dict(zip([c[0] for c in CONVS], [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]))

# Gatys et al. (2016): content at relu4_2, style at relu1_1 … relu5_1
CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
GATYS_LAYERS = CONTENT_LAYERS + STYLE_LAYERS

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)  # torchvision: on [0, 1]
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # h5: on 0–255, BGR


def layer_sequence() -> list[str]:
    """Every layer name of VGG-19's feature stack in order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, …"""
    names = []
    for i, (conv, _, _) in enumerate(CONVS):
        names += [conv, "relu" + conv[4:]]
        if i + 1 == len(CONVS) or CONVS[i + 1][0][4] != conv[4]:  # the block ends
            names.append("pool" + conv[4])
    return names


def h5_path() -> Path:
    return data_root() / "weights" / H5_NAME


def _missing_weights_error(why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"VGG-19 weights not found ({why}). Provide them one of two ways: (1) with a network, let torchvision "
        "download VGG19_Weights.IMAGENET1K_V1 (pass source='torchvision' or set L2L_DOWNLOAD=1); or (2) offline, "
        f"put the Keras file {H5_NAME} at {h5_path()} (the folder weights/ under the data root L2L_DATA).")


def convert_h5(path: Path | str) -> dict[str, Tensor]:
    """The h5 file's 16 conv layers as {"<conv>.weight": [out, in, 3, 3], "<conv>.bias": [out]} in fp32.

    A kernel (3, 3, in, out) becomes (out, in, 3, 3) by transpose(3, 2, 0, 1); nothing is flipped and the
    input channels stay in the file's BGR order.
    """
    import h5py

    state = {}
    with h5py.File(str(path), "r") as f:
        for name, c_in, c_out in CONVS:
            key = f"block{name[4]}_conv{name[6]}"
            W = torch.from_numpy(f[key][f"{key}_W_1:0"][()])
            b = torch.from_numpy(f[key][f"{key}_b_1:0"][()])
            if W.shape != (3, 3, c_in, c_out) or b.shape != (c_out,):
                raise ValueError(f"{path}: {key} has shapes {tuple(W.shape)}, {tuple(b.shape)}; "
                                 f"expected (3, 3, {c_in}, {c_out}) and ({c_out},) — not VGG-19 notop weights?")
            state[f"{name}.weight"] = W.permute(3, 2, 0, 1).float().contiguous()
            state[f"{name}.bias"] = b.float().contiguous()
    return state


def _h5_state(path: Path) -> dict[str, Tensor]:
    """convert_h5, cached as safetensors keyed on the file's path, size and mtime."""
    from safetensors.torch import load_file

    st = path.stat()
    stamp = hashlib.sha256(f"{path}|{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    cached = cache_dir() / f"vgg19-h5-{stamp}.safetensors"
    if cached.is_file():
        try:
            state = load_file(str(cached))
            if len(state) == 2 * len(CONVS):
                return state
        except Exception:
            pass  # a damaged cache is derived data: convert again
    state = convert_h5(path)
    save_cache(state, cached)  # atomic; an unwritable cache only costs a conversion next time
    return state


def _torchvision_cached() -> bool:
    from torchvision.models import VGG19_Weights

    name = os.path.basename(VGG19_Weights.IMAGENET1K_V1.url)
    return (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file()


def _torchvision_state(download: bool) -> dict[str, Tensor]:
    from torchvision.models import VGG19_Weights

    if not (download or _torchvision_cached()):
        raise _missing_weights_error("torchvision's VGG19_Weights.IMAGENET1K_V1 is not in the torch hub cache "
                                     "and downloading is off")
    try:
        full = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as e:  # no network, a proxy, a truncated file
        raise _missing_weights_error(f"torchvision could not provide VGG19_Weights.IMAGENET1K_V1: "
                                     f"{type(e).__name__}: {e}") from e
    state = {}
    for name, _, _ in CONVS:
        i = TORCHVISION_INDEX[name]
        state[f"{name}.weight"] = full[f"features.{i}.weight"].float()
        state[f"{name}.bias"] = full[f"features.{i}.bias"].float()
    return state


def resolve_source(source: str = "auto", download: bool | None = None) -> str:
    """"auto": torchvision's weights if already downloaded, else the local h5, else torchvision with a download
    when allowed (download=True or L2L_DOWNLOAD=1); neither available is one error naming both ways."""
    if source not in ("auto",) + SOURCES:
        raise ValueError(f"unknown VGG-19 weight source {source!r}; choose 'auto', 'torchvision' or 'h5'")
    if download is None:
        download = os.environ.get("L2L_DOWNLOAD") == "1"
    if source != "auto":
        return source
    if _torchvision_cached():
        return "torchvision"
    if h5_path().is_file():
        return "h5"
    if download:
        return "torchvision"
    raise _missing_weights_error(f"no torchvision checkpoint in {torch.hub.get_dir()}/checkpoints, "
                                 f"no file at {h5_path()}, and downloading is off")


class VGGFeatures(nn.Module):
    """VGG-19 up to the deepest of `layers`; forward(images in [0, 1], RGB) → {layer: activation}."""

    def __init__(self, state: dict[str, Tensor], source: str, layers=GATYS_LAYERS):
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"unknown VGG-19 weight source {source!r}; expected one of {SOURCES}")
        order = layer_sequence()
        unknown = [l for l in layers if l not in order]
        if unknown:
            raise ValueError(f"unknown VGG-19 layers {unknown}; names look like relu4_2 (see layer_sequence())")
        self.source, self.layers = source, tuple(layers)
        self.names = order[:max(order.index(l) for l in layers) + 1]  # nothing past the deepest layer is built
        modules = {}
        for name in self.names:
            if name.startswith("conv"):
                c_in, c_out = next((i, o) for n, i, o in CONVS if n == name)
                modules[name] = nn.Conv2d(c_in, c_out, 3, padding=1)
            elif name.startswith("relu"):
                modules[name] = nn.ReLU()
            else:
                modules[name] = nn.MaxPool2d(2, 2)
        self.net = nn.ModuleDict(modules)
        self.net.load_state_dict({k: v for k, v in state.items() if k.split(".")[0] in modules})
        if source == "torchvision":
            mean, scale = torch.tensor(IMAGENET_MEAN_RGB), 1.0 / torch.tensor(IMAGENET_STD_RGB)
        else:  # BGR order, 0–255, minus the Caffe mean; the mean is given in BGR already
            mean, scale = torch.tensor(CAFFE_MEAN_BGR) / 255.0, torch.full((3,), 255.0)
        self.register_buffer("mean", mean.view(1, 3, 1, 1))
        self.register_buffer("scale", scale.view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] RGB in [0, 1] → what this weight source was trained on."""
        if self.source == "h5":
            images = images.flip(1)  # RGB → BGR
        return (images - self.mean) * self.scale

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x, out = self.preprocess(images), {}
        for name in self.names:
            x = self.net[name](x)
            if name in self.layers:
                out[name] = x
        return out

    def train(self, mode: bool = True):
        return super().train(False)  # always eval: VGG-19 has no dropout or batch norm here, but stay explicit


_LOADED: dict[tuple, VGGFeatures] = {}


def load_vgg19(layers=GATYS_LAYERS, source: str = "auto", device: torch.device | str = "cpu",
               download: bool | None = None) -> VGGFeatures:
    """Frozen VGG-19 features on `device` from `source` ("auto", "torchvision" or "h5"); one copy per process."""
    device = torch.device(device)
    if download is None:  # asking for torchvision by name allows its download
        download = source == "torchvision" or os.environ.get("L2L_DOWNLOAD") == "1"
    source = resolve_source(source, download)
    key = (source, tuple(layers), str(device), str(h5_path()) if source == "h5" else "")
    if key not in _LOADED:
        if source == "h5":
            if not h5_path().is_file():
                raise _missing_weights_error(f"no file at {h5_path()}")
            state = _h5_state(h5_path())
        else:
            state = _torchvision_state(download)
        _LOADED[key] = VGGFeatures(state, source, layers).to(device)
    return _LOADED[key]


def describe(features: VGGFeatures) -> str:
    """The weight source in words, for figures and run records."""
    if features.source == "h5":
        return f"VGG-19 ImageNet conv weights from the Keras file $L2L_DATA/weights/{H5_NAME} (BGR, 0-255, Caffe mean)"
    return "VGG-19 ImageNet weights from torchvision (VGG19_Weights.IMAGENET1K_V1; RGB, ImageNet mean/std)"
