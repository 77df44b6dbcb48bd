"""Neural art: the VGG-19 weights (l2l.vgg), the style-transfer optimizee and its image reader.

The h5 tests read the real Keras file from L2L_DATA (CI: ../shared/data) and are skipped without it; the
loss arithmetic runs on a VGG-19 with random weights, so it needs no download and no data.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import l2l.vgg as vgg
from l2l.data import load_image
from l2l.problems.style import StyleFamily, gram, resize, total_variation

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("L2L_DATA") or REPO.parent / "shared" / "data").resolve()
H5 = DATA / "weights" / vgg.H5_NAME
needs_h5 = pytest.mark.skipif(not H5.is_file(), reason=f"VGG-19 h5 weights not found under L2L_DATA={DATA}")


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    monkeypatch.setenv("L2L_DATA", str(DATA))
    monkeypatch.delenv("L2L_DOWNLOAD", raising=False)
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny images: one thread is as fast and shares the cores politely
    yield
    torch.set_num_threads(n)


def random_features(layers=vgg.GATYS_LAYERS) -> vgg.VGGFeatures:
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, c_in, c_out in vgg.CONVS:
        state[f"{name}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * (2 / (9 * c_in)) ** 0.5
        state[f"{name}.bias"] = torch.zeros(c_out)
    return vgg.VGGFeatures(state, "torchvision", layers)


@pytest.fixture
def random_vgg(monkeypatch):
    """Make StyleFamily build on a random-weight VGG-19 (the arithmetic tests need no weights file)."""
    features = random_features()
    monkeypatch.setattr("l2l.problems.style.load_vgg19", lambda *a, **k: features)
    return features


@needs_h5
def test_h5_conversion_is_exact_on_kernels_and_features_are_finite():
    import h5py

    state = vgg.convert_h5(H5)
    assert len(state) == 2 * len(vgg.CONVS)
    with h5py.File(H5, "r") as f:
        for name, key in [("conv1_1", "block1_conv1"), ("conv3_2", "block3_conv2"), ("conv5_1", "block5_conv1")]:
            raw = torch.from_numpy(f[key][f"{key}_W_1:0"][()])  # (3, 3, in, out), HWIO
            W = state[f"{name}.weight"]  # (out, in, 3, 3), OIHW
            assert W.dtype == torch.float32 and W.shape == (raw.shape[3], raw.shape[2], 3, 3)
            # element by element: W[o, i, y, x] == raw[y, x, i, o], no flip, channels in the file's order
            assert torch.equal(W, raw.permute(3, 2, 0, 1))
            assert W[5, 1, 0, 2] == raw[0, 2, 1, 5]
            assert torch.equal(state[f"{name}.bias"], torch.from_numpy(f[key][f"{key}_b_1:0"][()]))
    features = vgg.VGGFeatures(state, "h5", vgg.GATYS_LAYERS)
    out = features(torch.rand(2, 3, 16, 16))
    assert set(out) == set(vgg.GATYS_LAYERS)
    assert all(torch.isfinite(v).all() and (v > 0).any() for v in out.values())
    assert features.names[-1] == "relu5_1"  # nothing past the deepest layer is built
    assert not any(p.requires_grad for p in features.parameters()) and not features.training


@needs_h5
def test_h5_source_feeds_bgr_0_255_minus_mean():
    features = vgg.VGGFeatures(vgg.convert_h5(H5), "h5", ("relu1_1",))
    x = torch.rand(1, 3, 4, 4)
    expected = x[:, [2, 1, 0]] * 255 - torch.tensor(vgg.CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    torch.testing.assert_close(features.preprocess(x), expected)


def test_missing_weights_error_names_both_ways(monkeypatch, tmp_path):
    monkeypatch.setenv("L2L_DATA", str(tmp_path))
    monkeypatch.setattr(vgg, "_torchvision_cached", lambda: False)
    with pytest.raises(FileNotFoundError) as err:
        vgg.load_vgg19(source="auto")
    msg = str(err.value)
    assert "VGG19_Weights.IMAGENET1K_V1" in msg and vgg.H5_NAME in msg and str(tmp_path) in msg
    with pytest.raises(FileNotFoundError, match="IMAGENET1K_V1.*" + vgg.H5_NAME):
        vgg.load_vgg19(source="h5")


def test_gram_matches_direct_formula():
    f = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    direct = torch.zeros(2, 3, 3, dtype=torch.float64)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                direct[b, i, j] = sum(f[b, i, y, x] * f[b, j, y, x] for y in range(4) for x in range(5)) / 20
    torch.testing.assert_close(gram(f), direct)


def test_style_loss_terms_at_the_content_image(random_vgg):
    g = torch.Generator().manual_seed(0)
    content = torch.randint(0, 256, (3, 3, 16, 16), generator=g, dtype=torch.uint8)
    fam = StyleFamily(content, content[1], size=16, batch=2)
    problem = fam.problem([0, 1])
    theta = problem.init()
    assert problem.n_instances == 2 and theta["image"].shape == (2 * 3 * 16 * 16,)
    terms = problem.terms(theta)
    assert torch.all(terms["content"].abs() < 1e-10)  # θ_0 is the content image
    assert terms["style"][1].abs() < 1e-6 < terms["style"][0]  # image 1 is also the style image
    torch.testing.assert_close(terms["tv"], total_variation(problem.content))
    loss = problem.loss(theta)
    w = fam.weights
    torch.testing.assert_close(loss, 16 * 16 * (w.content * terms["content"] + w.style * terms["style"]
                                                 + w.tv * terms["tv"]))
    # each image is its own instance: image 0's loss does not depend on image 1's pixels
    theta["image"].requires_grad_(True)
    (grad,) = torch.autograd.grad(problem.loss(theta)[0], theta["image"])
    assert grad.view(2, -1)[1].abs().max() == 0 and grad.view(2, -1)[0].abs().max() > 0


def test_sampling_is_seeded(random_vgg):
    content = torch.randint(0, 256, (5, 3, 20, 24), dtype=torch.uint8)  # resized (crop + resize) to 16x16
    fam = StyleFamily(content, torch.rand(3, 16, 30), size=16)
    a = fam.sample(torch.Generator().manual_seed(3)).init()["image"]
    b = fam.sample(torch.Generator().manual_seed(3)).init()["image"]
    assert torch.equal(a, b) and a.shape == (3 * 16 * 16,)
    many = StyleFamily(content, torch.rand(3, 16, 30), size=16, batch=5)  # as many photos as the family has
    for seed in range(5):
        images = many.sample(torch.Generator().manual_seed(seed)).content
        assert len({tuple(im.flatten().tolist()) for im in images}) == 5  # each photo once in a problem


def test_image_reader_and_resize(tmp_path):
    from PIL import Image

    pixels = torch.randint(0, 256, (10, 14, 3), dtype=torch.uint8)
    Image.fromarray(pixels.numpy()).save(tmp_path / "ok.png")
    image = load_image(tmp_path / "ok.png")
    assert image.shape == (3, 10, 14) and torch.equal(image, pixels.permute(2, 0, 1))
    assert resize(image, 8).shape == (3, 8, 8)
    assert resize(image, 5, square=False).shape == (3, 5, 7)
    (tmp_path / "bad.jpg").write_bytes(b"this is not a JPEG")
    with pytest.raises(ValueError, match="bad.jpg"):
        load_image(tmp_path / "bad.jpg")


def test_the_style_loss_matches_its_previous_implementation(random_vgg):
    """Issue 17: the loss with target norms computed once and the Gram residual as one baddbmm (one bmm backward)
    gives the loss and gradient of the plain autograd expression it replaced (benchmarks/bench.py keeps it), to
    fp32 rounding, and still has a second derivative (second-order meta-gradients)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench", REPO / "benchmarks" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    g = torch.Generator().manual_seed(0)
    content = torch.randint(0, 256, (3, 3, 32, 32), generator=g, dtype=torch.uint8)
    style = torch.randint(0, 256, (3, 32, 45), generator=g, dtype=torch.uint8)  # not square: HW not a power of 2
    fam = StyleFamily(content, style, size=32, batch=3)
    problem = fam.problem([0, 1, 2])
    theta = {"image": (problem.init()["image"] + 0.05 * torch.randn(3 * 3 * 32 * 32, generator=g)).requires_grad_()}
    new, old = problem.loss(theta), bench.style_loss_before(problem, theta)
    torch.testing.assert_close(new, old, rtol=1e-5, atol=0)
    (g_new,) = torch.autograd.grad(new.sum(), theta["image"], create_graph=True)
    (g_old,) = torch.autograd.grad(old.sum(), theta["image"], create_graph=True)
    torch.testing.assert_close(g_new, g_old, rtol=1e-5, atol=1e-5 * g_old.abs().max().item())
    v = torch.randn(g_new.shape, generator=g)  # Hessian-vector products agree too
    (h_new,) = torch.autograd.grad((g_new * v).sum(), theta["image"])
    (h_old,) = torch.autograd.grad((g_old * v).sum(), theta["image"])
    torch.testing.assert_close(h_new, h_old, rtol=1e-4, atol=1e-4 * h_old.abs().max().item())


def test_paper_settings_follow_the_issue_protocol():
    """Issue 17: 64 px training, 128 px new style, φ by final validation loss, tuning on >= 4 photos per setting
    over grids the choice can be interior to, >= 20 test photos per setting."""
    from l2l.experiments import art
    s = art.settings("paper")
    assert (s.size, s.test_size, s.meta.horizon, s.meta.unroll) == (64, 128, 128, 32)
    assert s.meta.val_metric == "final" and s.n_test >= 20 and s.n_tune * s.batch >= 4
    for setting in ("a", "b"):
        grids = s.lr_grids[setting]
        assert set(grids) == {"SGD", "RMSprop", "Adam", "NAG"} and all(len(g) >= 3 for g in grids.values())
    assert s.extend >= 1


def test_a_finished_art_comparison_is_kept(random_vgg, tmp_path, monkeypatch):
    from l2l.experiments import art, common
    s = art.settings("smoke")
    s = type(s)(**{**s.__dict__, "lr_grids": {"a": {n: (1e-3, 1e-2) for n in ("SGD", "RMSprop", "Adam", "NAG")}},
                   "extend": 1})
    fam = StyleFamily(torch.rand(2, 3, 16, 16), torch.rand(3, 16, 16), size=16)
    lstm, cache = art.make_optimizer(), tmp_path / "setting-a.pt"
    curves, tuning, results = art.compare(lstm, fam, fam, s, common.seeds(0), progress=False, cache=cache)
    assert cache.exists() and set(curves) == {"LSTM", "SGD", "RMSprop", "Adam", "NAG"}
    for n in tuning.rates:  # the setting's own grid (not lr_grid), extended by at most one rate past an edge
        tried = sorted(tuning.scores[n])
        assert set(tried) >= {1e-3, 1e-2} and set(tried) <= {1e-4, 1e-3, 1e-2, 1e-1} and len(tried) <= 3
    monkeypatch.setattr(common, "tune_baselines", lambda *a, **k: pytest.fail("recomputed a kept comparison"))
    again, tuning_again, results_again = art.compare(lstm, fam, fam, s, common.seeds(0), progress=False, cache=cache)
    assert tuning_again.rates == tuning.rates and all(torch.equal(curves[n], again[n]) for n in curves)
    assert all(torch.equal(results[n], results_again[n]) for n in results)
