"""Build .gpu/, what chapter 4's run needs on a lent GPU machine that the repository does not hold.

    python tools/gpu/payload.py            # then: bash tools/gpu/hide.sh hide; run; bash tools/gpu/hide.sh restore

The device tool sends the working tree and at most 64 MiB in all, and its machine has PyTorch but neither the
data nor papermill's kernel stack. So .gpu/ (ignored by git) holds:
- data/: the files of $L2L_DATA that the paper profile reads (the first n photos of each split, in the split's
  sorted order), plus empty files under the names of the photos it never reads, so each split's file count
  check holds;
- data/weights/: the VGG-19 h5 file, gzip-compressed with HDF5's shuffle filter (lossless); the convolutions
  past the deepest layer the loss uses (relu5_1: conv5_2 … conv5_4), which `VGGFeatures` never builds, travel as zeros;
- whl/: papermill and ipykernel for the device's Python 3.12, less what its image already has (debugpy and
  jedi are optional imports of ipykernel and IPython, and are left out);
- py/sitecustomize.py: turns TF32 off on CUDA, so the VGG convolutions run in fp32 as on the CPU.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from l2l.data import data_root
from l2l.experiments import art
from l2l.problems.style import DATASETS, STYLES, list_images
from l2l.vgg import CONVS, GATYS_LAYERS, H5_NAME, h5_path, layer_sequence

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / ".gpu"
BUILT = layer_sequence()[:max(layer_sequence().index(l) for l in GATYS_LAYERS) + 1]  # as VGGFeatures builds
UNUSED = {f"block{c[4]}_conv{c[6]}" for c, _, _ in CONVS if c not in BUILT}  # h5 groups past the deepest layer
ON_DEVICE = {"attrs", "certifi", "charset_normalizer", "click", "idna", "markdown_it_py", "mdurl", "packaging",
             "psutil", "pygments", "python_dateutil", "pyyaml", "requests", "tqdm", "typing_extensions",
             "urllib3", "tzdata", "debugpy", "jedi"}
SITE = """# Device runs only: fp32 convolutions and matrix products on CUDA, as on the CPU (PyTorch lets cuDNN use
# TF32 by default, which rounds the VGG convolutions' inputs to 10-bit mantissas).
try:
    import torch
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
except ImportError:
    pass
"""


def content(s) -> None:
    """Each split the profile reads: its first n photos copied, the rest of the split's stop as empty files."""
    reads = {"train": s.n_train, "validation": s.n_val, "test": s.n_test}
    for dataset, splits in DATASETS.items():
        for split, (sub, pattern, start, stop) in splits.items():
            paths = list_images(data_root() / "images" / "content" / sub, pattern)[:stop]
            dest = OUT / "data" / "images" / "content" / sub
            dest.mkdir(parents=True, exist_ok=True)
            for i, p in enumerate(paths):
                target = dest / p.name
                if target.is_file() and target.stat().st_size:  # copied by an earlier build
                    continue
                if start <= i < start + reads[split]:
                    shutil.copy(p, target)
                else:
                    target.touch()  # listed, never read
    styles = OUT / "data" / "images" / "style"
    styles.mkdir(parents=True, exist_ok=True)
    for name in (s.train_style, s.test_style):
        shutil.copy(data_root() / "images" / "style" / STYLES[name], styles)


def weights() -> None:
    dest = OUT / "data" / "weights" / H5_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(h5_path(), "r") as src, h5py.File(dest, "w") as out:
        for k, v in src.attrs.items():
            out.attrs[k] = v
        for group in src:
            g = out.create_group(group)
            for k, v in src[group].attrs.items():
                g.attrs[k] = v
            for name, data in src[group].items():
                a = data[()]
                g.create_dataset(name, data=np.zeros_like(a) if group in UNUSED else a, compression="gzip",
                                 compression_opts=9, shuffle=True)


def wheels() -> None:
    dest = OUT / "whl"
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                                             "manylinux2014_x86_64", "manylinux1_x86_64", "any")]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version=3.12",
                    "--implementation=cp", *platforms, "-d", str(dest), "papermill", "ipykernel"], check=True)
    for wheel in dest.glob("*.whl"):
        if wheel.name.split("-")[0].lower() in ON_DEVICE:
            wheel.unlink()


def main() -> None:
    s = art.settings("paper")
    content(s)
    weights()
    wheels()
    (OUT / "py").mkdir(exist_ok=True)
    (OUT / "py" / "sitecustomize.py").write_text(SITE)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{OUT.relative_to(ROOT)}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
