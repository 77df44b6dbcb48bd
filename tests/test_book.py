"""The notebooks agree with their py:percent pairs, and the book builds offline with warnings as errors."""
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
from jupytext.compare import compare_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(ROOT.glob("book/*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_and_py_percent_pair_are_in_sync(notebook):
    pair = notebook.with_suffix(".py")
    assert pair.exists(), f"{notebook.name} has no py:percent pair; run: jupytext --set-formats ipynb,py:percent {notebook}"
    compare_notebooks(jupytext.read(pair), jupytext.read(notebook), fmt="py:percent")


def test_every_notebook_has_a_parameters_cell_with_profile():
    for nb_path in sorted(ROOT.glob("notebooks/*.ipynb")):
        nb = jupytext.read(nb_path)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "profile" in tagged[0].source, nb_path.name


def test_book_builds_offline_with_warnings_as_errors(tmp_path):
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    assert jb, "jupyter-book is not installed (pip install -e '.[dev]')"
    result = subprocess.run([jb, "build", str(ROOT), "--path-output", str(tmp_path), "-W", "-n", "--keep-going"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    assert (html / "notebooks" / "01_quadratic.html").exists()
    assert (html / "book" / "summary.html").exists()
