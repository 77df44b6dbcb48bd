"""CIFAR-10: the loader (l2l.data_cifar), the CNN optimizee (l2l.problems.cnn) and the two-LSTM optimizer.

Everything here runs on synthetic images (a tiny image-folder tree written to tmp_path, or random tensors), so
it needs no dataset and takes seconds.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import l2l
import l2l.data_cifar as dc
from l2l.experiments import cifar
from l2l.problems import CNNFamily
from l2l.unroll import start, unroll


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test reads the real data root or cache, or leaves loaded tensors behind for the next one."""
    monkeypatch.setenv("L2L_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("L2L_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("L2L_DOWNLOAD", raising=False)
    monkeypatch.setattr(dc, "_LOADED", {})


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_family(n: int = 256, **kw) -> CNNFamily:
    """A CNNFamily whose images are `n` random images per split (labels 0..n_classes-1), no dataset needed."""
    fam = CNNFamily(**kw)
    g = torch.Generator().manual_seed(1)
    for split in dc.SPLITS:
        fam._data[split] = (torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
                            torch.randint(0, fam.n_classes, (n,), generator=g))
    return fam


def reference_net(fam: CNNFamily, p: dict) -> nn.Sequential:
    """The same network as nn.Modules with the same weights; batch norm in training mode."""
    layers, c_in = [], 3
    for i, c in enumerate(fam.channels):
        conv, bn = nn.Conv2d(c_in, c, fam.kernel, padding=fam.kernel // 2, bias=False), nn.BatchNorm2d(c)
        with torch.no_grad():
            conv.weight.copy_(p[f"conv{i}.weight"])
            bn.weight.copy_(p[f"conv{i}.bn.gamma"])
            bn.bias.copy_(p[f"conv{i}.bn.beta"])
        layers += [conv, bn, nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    fc, bn, out = nn.Linear(p["fc.weight"].shape[1], fam.hidden, bias=False), nn.BatchNorm1d(fam.hidden), \
        nn.Linear(fam.hidden, fam.n_classes)
    with torch.no_grad():
        fc.weight.copy_(p["fc.weight"])
        bn.weight.copy_(p["fc.bn.gamma"])
        bn.bias.copy_(p["fc.bn.beta"])
        out.weight.copy_(p["out.weight"])
        out.bias.copy_(p["out.bias"])
    return nn.Sequential(*layers, nn.Flatten(), fc, bn, nn.ReLU(), out).train()


@pytest.mark.parametrize("assign,classes", [("paper", "CIFAR-10"), ("official", "CIFAR-2")])
def test_loss_and_grads_match_nn_modules(assign, classes):
    fam = synthetic_family(assign=assign, classes=classes, batch_size=32)
    problem = fam.sample(torch.Generator().manual_seed(0))
    theta = {g: t.requires_grad_(True) for g, t in problem.init().items()}
    state = problem.generator.get_state()
    loss = problem.loss(theta)
    grads = torch.autograd.grad(loss.sum(), [theta["conv"], theta["fc"]])
    problem.generator.set_state(state)
    images, labels = problem.sample_batch()  # the same minibatch loss() drew

    p = problem.unflatten({g: t.detach() for g, t in theta.items()})
    net = reference_net(fam, p)
    scale, shift = fam.normalisation("cpu")
    ref = nn.functional.cross_entropy(net(images.float() * scale + shift), labels)
    ref.backward()
    ref_params = dict(zip([s.name for s in fam.specs], net.parameters(), strict=True))  # same order
    ref_grad = {g: torch.cat([ref_params[s.name].grad.reshape(-1) for s in fam.specs if s.group == g])
                for g in ("conv", "fc")}
    assert loss.shape == (1,) and problem.n_instances == 1
    torch.testing.assert_close(loss[0], ref.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], ref_grad["conv"], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[1], ref_grad["fc"], rtol=1e-4, atol=1e-6)


def test_parameter_groups_and_layout():
    fam = synthetic_family()
    conv = 16 * 3 * 25 + 2 * 16 * 16 * 25 + 3 * 2 * 16  # kernels + γ, β of three batch norms
    fc = 256 * 32 + 2 * 32 + 32 * 10 + 10
    assert fam.n_params == {"conv": conv, "fc": fc}
    assert CNNFamily(assign="official").n_params == {"conv": conv - 96, "fc": fc + 96}
    assert CNNFamily(classes="CIFAR-2").n_params["fc"] == fc - 8 * 33
    a, b = fam.sample(torch.Generator().manual_seed(3)), fam.sample(torch.Generator().manual_seed(3))
    ta = a.init()
    assert all(torch.equal(ta[g], b.init()[g]) for g in ("conv", "fc"))
    assert torch.equal(a.loss(ta), b.loss(b.init()))  # same seed, same minibatches
    p = a.unflatten(ta)
    assert p["conv0.weight"].shape == (16, 3, 5, 5) and p["out.bias"].shape == (10,)
    assert p["conv0.weight"].data_ptr() == ta["conv"].data_ptr()  # views, not copies
    assert torch.equal(p["conv2.bn.gamma"], torch.ones(16)) and torch.equal(p["fc.bn.beta"], torch.zeros(32))
    assert abs(a.loss(ta).item() - math.log(10)) < 1.0
    acc = a.accuracy(ta, chunk=100)
    assert 0.0 <= acc <= 1.0
    with pytest.raises(ValueError, match="subset"):
        CNNFamily(classes="CIFAR-3")
    with pytest.raises(ValueError, match="unknown or repeated"):
        CNNFamily(classes=("cat", "cat"))
    with pytest.raises(ValueError, match="split"):
        CNNFamily(split="validation")


def test_label_subsets_are_fixed_and_disjoint():
    s = dc.SUBSETS
    assert s["CIFAR-10"] == dc.CLASSES and len(s["CIFAR-5"]) == 5 and len(s["CIFAR-2"]) == 2
    assert set(s["CIFAR-2"]) <= set(s["CIFAR-5"])
    assert not set(s["CIFAR-5 complement"]) & set(s["CIFAR-5"])  # LSTM-sub never sees an evaluation class
    assert set(s["CIFAR-5 complement"]) | set(s["CIFAR-5"]) == set(dc.CLASSES)


def write_tree(root, per_class: int = 3, suffix: str = ".png"):
    """A tiny CIFAR-10 image-folder tree; pixel (0, 0, 0) of every image holds its class index."""
    import numpy as np
    from PIL import Image

    for split in ("train", "test"):
        for label, name in enumerate(dc.CLASSES):
            folder = root / dc.IMAGE_TREE / split / name
            folder.mkdir(parents=True)
            for k in range(per_class):
                img = np.full((32, 32, 3), 10 * k, dtype=np.uint8)
                img[0, 0, 0] = label
                Image.fromarray(img).save(folder / f"{k:04d}{suffix}")


def test_loader_reads_a_jpeg_tree(tmp_path):
    write_tree(tmp_path / "data", per_class=2, suffix=".jpg")
    data = dc.load_cifar10("test")
    assert data.images.shape == (20, 3, 32, 32) and data.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert (data.images[1::2].float().mean() - 10).abs() < 2  # JPEG is lossy, but a flat grey stays near 10
    assert "image-folder tree (JPG, lossy)" in data.source


def test_loader_reads_an_image_folder_tree_and_caches_it(tmp_path):
    write_tree(tmp_path / "data")
    data = dc.load_cifar10("train")
    assert data.images.shape == (30, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert torch.equal(data.images[:, 0, 0, 0].long(), data.labels)  # each image under its own class
    assert "image-folder tree (PNG)" in data.source and "$L2L_DATA/" in data.source  # no machine-local path
    assert dc.load_cifar10("train") is data  # loaded once per process
    assert len(list((tmp_path / "cache").glob("cifar10-train-*.safetensors"))) == 1
    dc._LOADED.clear()
    again = dc.load_cifar10("train")  # read back from the safetensors cache
    assert torch.equal(again.images, data.images) and torch.equal(again.labels, data.labels)
    fam = CNNFamily(classes="CIFAR-2", batch_size=4)
    images, labels = fam.data("test")
    assert images.shape[0] == 6 and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert fam.data_source() == data.source


def test_loader_prefers_torchvision_pickles(tmp_path, monkeypatch):
    """torchvision's layout wins over a tree beside it; the md5 check is bypassed for these synthetic files."""
    import pickle

    import numpy as np
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    write_tree(tmp_path / "data", per_class=1)
    folder = tmp_path / "data" / dc.PICKLES
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [1, 2, 3, 9]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(dc.CLASSES)}))
    data = dc.load_cifar10("train")
    assert data.images.shape == (20, 3, 32, 32) and data.labels.tolist() == [1, 2, 3, 9] * 5
    first = np.frombuffer(pickle.loads((folder / "data_batch_1").read_bytes())["data"][0].tobytes(), np.uint8)
    assert torch.equal(data.images[0].reshape(-1), torch.from_numpy(first.copy()))  # CHW, as the pickles store it
    assert data.source.startswith("torchvision CIFAR10 (python pickles, lossless)")


def test_missing_data_names_the_root_and_both_layouts(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        dc.load_cifar10("train")
    msg = str(err.value)
    assert str((tmp_path / "data").resolve()) in msg and "cifar-10-batches-py" in msg and "CIFAR-10-images" in msg
    assert "L2L_DATA" in msg
    (tmp_path / "data" / dc.IMAGE_TREE / "train" / "cat").mkdir(parents=True)  # a tree with empty classes
    with pytest.raises(FileNotFoundError, match="no images for classes"):
        dc.load_cifar10("train")
    with pytest.raises(ValueError, match="split"):
        dc.load_cifar10("validation")


def test_two_lstm_routing_gives_both_lstms_meta_gradients():
    fam = synthetic_family(batch_size=8, channels=(4, 4, 4), hidden=8)
    torch.manual_seed(0)
    opt = cifar.make_optimizer(two=True)
    assert set(opt.nets) == {"conv", "fc"} and opt.net_for("conv") is not opt.net_for("fc")
    problem = fam.sample(torch.Generator().manual_seed(0))
    losses, _ = unroll(opt, problem, start(opt, problem), steps=3, track_graph=True)
    torch.stack(losses).sum().backward()
    for name, p in opt.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    one = cifar.make_optimizer(two=False)
    assert list(one.nets) == ["default"] and one.net_for("conv") is one.net_for("fc")
    assert sum(p.numel() for p in opt.parameters()) == 2 * sum(p.numel() for p in one.parameters())


def test_settings_profiles():
    for profile in ("paper", "quick", "smoke"):
        s = cifar.settings(profile)
        assert s.steps == s.meta.horizon and s.meta.horizon % s.meta.unroll == 0
    paper = cifar.settings("paper")
    assert (paper.meta.horizon, paper.meta.unroll, paper.batch_size) == (100, 20, 128)
    # the protocol of issue 16: φ by final validation loss over >= 10 networks, >= 6x10^4 steps per LSTM,
    # >= 5 tuning networks, >= 50 test networks, a grid wide enough that the chosen rates can be interior
    assert paper.meta.val_metric == "final" and paper.meta.n_val >= 10
    assert paper.meta.epochs * paper.meta.problems_per_epoch * paper.meta.horizon >= 60_000
    assert paper.n_tune >= 5 and paper.n_test >= 50 and cifar.settings("quick").n_test >= 5
    assert min(paper.lr_grid) <= 1e-4 and max(paper.lr_grid) >= 10
    with pytest.raises(ValueError, match="profile"):
        cifar.settings("huge")
