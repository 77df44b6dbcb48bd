"""Publish a papermill-executed notebook as the committed chapter: outputs from the run, inputs from the pair.

    python tools/publish_notebook.py /tmp/02_mnist_paper.ipynb notebooks/02_mnist.ipynb

Drops papermill's injected-parameters cell (run.json records the parameters), its per-cell metadata and the
empty "tags" lists it adds, so the notebook stays in sync with its py:percent pair (a test checks this).
"""
import sys

import jupytext
import nbformat


def publish(executed: str, target: str) -> None:
    nb = nbformat.read(executed, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        for key in ("papermill", "execution"):  # per-cell timings: run.json keeps the wall time
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
    pair = jupytext.read(target[: -len(".ipynb")] + ".py")
    if [c.source for c in pair.cells] != [c.source for c in nb.cells]:
        raise SystemExit(f"{executed} was run from other inputs than {target}'s py:percent pair; re-run it")
    nbformat.write(nb, target)


if __name__ == "__main__":
    publish(*sys.argv[1:])
