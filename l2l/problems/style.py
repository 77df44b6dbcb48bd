"""The paper's neural-art optimizee (section 3.4): Gatys et al. style transfer, the image's pixels are θ.

    f(θ) = H W · [ α · content(θ) + β · style(θ) + γ · TV(θ) ]

θ is one flat group {"image": [k · 3 · S · S]}: k RGB images of S×S pixels on the [0, 1] scale (the VGG
extractor applies its weight source's own preprocessing). θ is not clamped inside the loss, which would zero
the gradient of every saturated pixel; images are clamped to [0, 1] only for display. θ_0 is the content
image itself (init="content"; "noise" starts from uniform noise instead), so every run starts from the
photograph and moves it towards the painting.

The three terms, all relative so that one set of weights serves both weight sources and every image size
(the two VGG-19 sources differ in input scale, so absolute feature magnitudes differ by orders of magnitude):

    content(x) = ‖F(x) − F(c)‖² / ‖F(c)‖²                     F = VGG-19 relu4_2
    style(x)   = 1/5 Σ_l ‖G_l(x) − G_l(s)‖² / ‖G_l(s)‖²       l ∈ relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    TV(x)      = mean of squared differences of neighbouring pixels (both directions)
    G_l(x)     = F_l F_lᵀ / (H_l W_l)                         channel Gram matrix, averaged over positions

Dividing by the target's own norm is Gatys' loss with fixed per-layer weights; averaging the Gram matrix over
positions lets the style image keep its own aspect ratio (only its short side is resized to S). The factor
H W (pixels per image: a sum over positions rather than a mean) keeps the gradient *per pixel*, which is what
the coordinatewise LSTM sees, of the same order at every resolution — exactly for the TV term, roughly for
the VGG terms (with the factor, its RMS grew ×2.5 from 32 to 64 px on two validation photos; without it,
it would have shrunk ×1.6). A problem holds k content images (k = `batch`, 1 by default): each is its own instance.

Content photos come from a folder of images (decoded by `l2l.data.load_image`) with fixed splits
(`DATASETS`), style paintings from `<L2L_DATA>/images/style` (`STYLES`); decoded, resized images are cached
as uint8 safetensors in `cache_dir()`.

Used in: 04_neural_art.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import cache_dir, data_root, load_image, save_cache
from ..vgg import CONTENT_LAYERS, GATYS_LAYERS, STYLE_LAYERS, load_vgg19

# Content photos: (folder under <L2L_DATA>/images/content, glob, sort key) and each split's [start, stop) in
# that sorted list. tiny-imagenet's val_<i> are in a random class order, so consecutive blocks are random
# samples: the paper's 1800 / 20 / 100 split at 64×64. BSDS500 (481×321 photos) gives the 128×128 tests.
DATASETS = {
    "tiny-imagenet": {"train": ("tiny-imagenet-200-val/images", "*.JPEG", 0, 1800),
                      "validation": ("tiny-imagenet-200-val/images", "*.JPEG", 1800, 1820),
                      "test": ("tiny-imagenet-200-val/images", "*.JPEG", 1820, 1920)},
    "bsds500": {"validation": ("BSDS500/val", "*.jpg", 0, 20),
                "test": ("BSDS500/test", "*.jpg", 0, 100)},
}
STYLES = {"starry_night": "van_gogh_starry_night.jpg", "great_wave": "hokusai_great_wave.jpg",
          "scream": "munch_the_scream.jpg", "minotaur": "turner_shipwreck_of_the_minotaur.jpg"}
INITS = ("content", "noise")


@dataclass(frozen=True)
class LossWeights:
    """α, β, γ of f = H W (α·content + β·style + γ·TV) (the terms are relative; see the module docstring).

    Chosen by eye on a few 64×64 training photos with Starry Night and Adam: β = 3 keeps the photo
    recognisable while clearly taking on the painting's texture (β = 10 drowned the content, β = 1 was faint)."""

    content: float = 1.0
    style: float = 3.0
    tv: float = 10.0


def _natural_key(path: Path):
    """val_2 before val_10: digits compared as numbers."""
    digits = "".join(ch for ch in path.stem if ch.isdigit())
    return (int(digits) if digits else -1, path.name)


def resize(image: Tensor, size: int, square: bool = True) -> Tensor:
    """uint8 [3, H, W] → uint8 [3, size, size] (centre square crop, then antialiased resize); with
    square=False the short side becomes `size` and the aspect ratio is kept."""
    _, h, w = image.shape
    if square:
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        image, shape = image[:, top:top + s, left:left + s], (size, size)
    else:
        shape = (size, max(1, round(w * size / h))) if h <= w else (max(1, round(h * size / w)), size)
    if tuple(image.shape[1:]) == shape:
        return image.contiguous()
    out = F.interpolate(image[None].float(), size=shape, mode="bilinear", antialias=True, align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def list_images(folder: Path, pattern: str) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} not found; set L2L_DATA to the data root that holds "
                                "images/content and images/style (see the chapter's notes on data)")
    return sorted(folder.glob(pattern), key=_natural_key)


def read_folder(paths: list[Path], size: int) -> Tensor:
    """Files → uint8 [N, 3, size, size], cached in cache_dir() keyed on the files' paths, sizes and mtimes."""
    from safetensors.torch import load_file

    stamp = "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths) + f"|{size}"
    cached = cache_dir() / f"images-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.safetensors"
    if cached.is_file():
        try:
            images = load_file(str(cached))["images"]
            if images.shape == (len(paths), 3, size, size):
                return images
        except Exception:
            pass  # damaged cache: decode again
    images = torch.stack([resize(load_image(p), size) for p in paths]) if paths else torch.zeros(0, 3, size, size,
                                                                                                  dtype=torch.uint8)
    save_cache({"images": images.contiguous()}, cached)
    return images


def load_content(dataset: str, split: str, size: int, n: int | None = None) -> Tensor:
    """The first `n` images (all if None) of a fixed split of `dataset`, uint8 [n, 3, size, size]."""
    if dataset not in DATASETS or split not in DATASETS[dataset]:
        known = {d: sorted(s) for d, s in DATASETS.items()}
        raise ValueError(f"unknown content split {dataset!r}/{split!r}; known: {known}")
    sub, pattern, start, stop = DATASETS[dataset][split]
    folder = data_root() / "images" / "content" / sub
    paths = list_images(folder, pattern)
    if len(paths) < stop:
        raise FileNotFoundError(f"{folder} holds {len(paths)} {pattern} files; the {split} split needs "
                                f"indices {start}..{stop - 1} of the sorted list")
    stop = stop if n is None else min(stop, start + n)
    return read_folder(paths[start:stop], size)


def load_style(name: str, size: int) -> Tensor:
    """A painting from <L2L_DATA>/images/style, short side resized to `size`: uint8 [3, size, ≥size]."""
    if name not in STYLES:
        raise ValueError(f"unknown style {name!r}; choose one of {sorted(STYLES)}")
    path = data_root() / "images" / "style" / STYLES[name]
    if not path.is_file():
        raise FileNotFoundError(f"style image {path} not found; set L2L_DATA to the data root holding images/style")
    return resize(load_image(path), size, square=False)


def gram(features: Tensor) -> Tensor:
    """[B, C, H, W] → [B, C, C]: Σ_positions F Fᵀ / (H W)."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w)


def squared_norm(target: Tensor) -> Tensor:
    """‖target‖² per batch row (clamped away from 0): the denominator of a relative term, computed once per target."""
    return target.pow(2).sum(tuple(range(1, target.dim()))).clamp_min(1e-12)


class _GramResidual(torch.autograd.Function):
    """gram(features) − target for flat features [B, C, n] and a target [1, C, C], as one baddbmm.

    The backward is one bmm, (dD + dDᵀ) F / n, where autograd's backward of F Fᵀ takes two (one per operand);
    it is written in differentiable operations on the saved input, so second-order meta-gradients still work."""

    @staticmethod
    def forward(ctx, flat: Tensor, target: Tensor) -> Tensor:
        ctx.save_for_backward(flat)
        return torch.baddbmm(target.expand(flat.shape[0], -1, -1), flat, flat.transpose(1, 2), beta=-1,
                             alpha=1.0 / flat.shape[2])

    @staticmethod
    def backward(ctx, grad: Tensor):
        (flat,) = ctx.saved_tensors
        return torch.bmm(grad + grad.transpose(1, 2), flat) / flat.shape[2], None


def style_term(features: Tensor, target_gram: Tensor, target_norm: Tensor) -> Tensor:
    """‖gram(features) − target_gram‖² / target_norm per image, target_norm = squared_norm(target_gram) computed
    once per style. The same numbers, to fp32 rounding, as the plain autograd expression that computed it before
    issue 17 (kept as `style_loss_before` in benchmarks/bench.py; tests/test_art.py compares them). With 8 photos
    that way the arithmetic around the VGG-19 convolutions took ~10% of the loss's forward and backward at 64 and
    128 px; now 1-10% (benchmarks/RESULTS.md, issue 17)."""
    b, c, h, w = features.shape
    residual = _GramResidual.apply(features.reshape(b, c, h * w), target_gram)
    return residual.pow(2).sum((1, 2)) / target_norm


def total_variation(images: Tensor) -> Tensor:
    """Mean squared difference of vertically and horizontally neighbouring pixels, per image."""
    dv = (images[:, :, 1:, :] - images[:, :, :-1, :]).pow(2).mean((1, 2, 3))
    dh = (images[:, :, :, 1:] - images[:, :, :, :-1]).pow(2).mean((1, 2, 3))
    return dv + dh


class StyleProblem:
    """k content images restyled at once; loss(θ) gives one f per image, shape [k]."""

    def __init__(self, family: "StyleFamily", content: Tensor, theta0: Tensor):
        self.family, self.content, self.theta0 = family, content, theta0  # content: float [k, 3, S, S]
        with torch.no_grad():
            self.content_target = family.features(content)[CONTENT_LAYERS[0]]
            self.content_norm = squared_norm(self.content_target)

    @property
    def n_instances(self) -> int:
        return self.content.shape[0]

    def init(self) -> dict[str, Tensor]:
        return {"image": self.theta0.reshape(-1).clone()}

    def images(self, theta) -> Tensor:
        """θ as [k, 3, S, S] (a view: gradients reach θ)."""
        flat = theta["image"] if isinstance(theta, dict) else theta
        return flat.view(self.content.shape)

    def terms(self, theta) -> dict[str, Tensor]:
        """The unweighted content, style and TV terms per image."""
        x = self.images(theta)
        feats, fam = self.family.features(x), self.family
        # the targets' norms are computed once (family, problem); see style_term for the Gram matrices
        style = torch.stack([style_term(feats[l], fam.style_grams[l], fam.style_norms[l])
                             for l in STYLE_LAYERS]).mean(0)
        content = (feats[CONTENT_LAYERS[0]] - self.content_target).pow(2).sum((1, 2, 3)) / self.content_norm
        return {"content": content, "style": style, "tv": total_variation(x)}

    def loss(self, theta: dict[str, Tensor]) -> Tensor:
        w, t = self.family.weights, self.terms(theta)
        pixels = self.content.shape[2] * self.content.shape[3]
        return pixels * (w.content * t["content"] + w.style * t["style"] + w.tv * t["tv"])


@dataclass
class StyleFamily:
    """Restyle content photos (uint8 or [0, 1] float, [N, 3, S, S] or a list of [3, H, W]) with one style
    image ([3, H, W]) at `size`×`size` pixels. `sample` draws `batch` different content images at random;
    `problem(indices)` restyles given ones (test sets: each image once).
    """

    content: Tensor | list = field(repr=False)
    style: Tensor = field(repr=False)
    size: int = 64
    device: torch.device | str = "cpu"
    weights: LossWeights = LossWeights()
    batch: int = 1
    init: str = "content"
    source: str = "auto"  # VGG-19 weight source: "auto", "torchvision" or "h5" (l2l.vgg)
    name: str = ""  # what the content and style are, for records (e.g. "tiny-imagenet/train x starry_night")

    def __post_init__(self):
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; expected one of {INITS}")
        if self.size < 16 or self.batch < 1:
            raise ValueError(f"StyleFamily needs size >= 16 (VGG-19 pools 4 times) and batch >= 1, "
                             f"got {self.size}, {self.batch}")
        self.device = torch.device(self.device)
        self.features = load_vgg19(GATYS_LAYERS, self.source, self.device)
        self.source = self.features.source
        images = [_as_uint8(c) for c in self.content]
        if not images:
            raise ValueError("StyleFamily needs at least one content image")
        self._content = torch.stack([resize(c, self.size) for c in images]).to(self.device)
        style = _as_uint8(self.style)
        if min(style.shape[1:]) != self.size:
            style = resize(style, self.size, square=False)
        self._style = style.to(self.device)
        with torch.no_grad():
            feats = self.features(self.style_image[None])
            self.style_grams = {l: gram(feats[l]) for l in STYLE_LAYERS}
            self.style_norms = {l: squared_norm(g) for l, g in self.style_grams.items()}

    def __len__(self) -> int:
        return self._content.shape[0]

    @property
    def style_image(self) -> Tensor:
        """The style image as float [3, H, W] in [0, 1] on the device."""
        return self._style.float() / 255

    def content_image(self, index: int) -> Tensor:
        return self._content[index].float() / 255

    @property
    def n_params(self) -> int:
        return self.batch * 3 * self.size * self.size

    def problem(self, indices, generator: torch.Generator | None = None) -> StyleProblem:
        """A problem restyling the content images at `indices` (noise init draws from `generator`)."""
        content = self._content[torch.as_tensor(list(indices), dtype=torch.long, device=self.device)].float() / 255
        if self.init == "content":
            theta0 = content.clone()
        else:
            if generator is None:
                raise ValueError("init='noise' needs a generator")
            theta0 = torch.rand(content.shape, generator=generator).to(self.device)
        return StyleProblem(self, content, theta0)

    def sample(self, generator: torch.Generator) -> StyleProblem:
        """`batch` content images drawn at random, all different while the family has that many (a problem that
        holds one photo twice would weigh it twice), with replacement only when it has fewer."""
        if self.batch <= len(self):
            idx = torch.randperm(len(self), generator=generator)[:self.batch].tolist()
        else:
            idx = torch.randint(0, len(self), (self.batch,), generator=generator).tolist()
        return self.problem(idx, generator)


def _as_uint8(image: Tensor) -> Tensor:
    """[3, H, W] uint8, or float in [0, 1], → uint8 on the CPU."""
    image = torch.as_tensor(image).detach().cpu()
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an RGB image [3, H, W], got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image
    return (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
