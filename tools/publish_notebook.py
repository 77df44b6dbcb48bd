"""Publish a papermill-executed notebook as the committed chapter: outputs from the run, inputs from the pair.

    python tools/publish_notebook.py /tmp/02_mnist_paper.ipynb notebooks/02_mnist.ipynb

Drops papermill's injected-parameters cell (run.json records the parameters), its per-cell metadata and the
empty "tags" lists it adds, so the notebook stays in sync with its py:percent pair (a test checks this).

Keeps what a reader should see and nothing else: stderr (progress bars, warnings) and progress-bar widgets
are dropped, papermill's input and output paths become the published notebook's, and the script refuses a notebook whose outputs still name a path on the machine that ran it
(print paths with `l2l.book.display_path`) or hold a traceback.
"""
import re
import sys

import jupytext
import nbformat

WIDGET = "application/vnd.jupyter.widget-view+json"
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\\])/(home|root|tmp|work|Users|mnt|opt|var|srv|scratch|data|private)/")


def clean_outputs(nb) -> None:
    """Drop stderr streams and widget outputs (tqdm's bars) from every cell, and the widget state."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs
                        if not (o.output_type == "stream" and o.name == "stderr")
                        and WIDGET not in o.get("data", {})]
    nb.metadata.pop("widgets", None)


def problems(nb) -> list[str]:
    """Outputs a reader must not see: machine-local paths and errors."""
    found = []
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.output_type == "error":
                found.append(f"cell {i}: an error ({o.ename})")
                continue
            texts = [o.get("text", "")] + [v for k, v in o.get("data", {}).items()
                                           if k.startswith("text/") and isinstance(v, str)]
            for text in texts:
                for line in text.splitlines():
                    if ABSOLUTE_PATH.search(line):
                        found.append(f"cell {i}: a machine-local path: {line.strip()[:160]}")
    return found


def publish(executed: str, target: str) -> None:
    nb = nbformat.read(executed, as_version=4)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        for key in ("papermill", "execution"):  # per-cell timings: run.json keeps the wall time
            cell.metadata.pop(key, None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
    clean_outputs(nb)
    run = nb.metadata.get("papermill", {})
    if "input_path" in run:  # where the run read and wrote its notebook on that machine: the published file instead
        run["input_path"], run["output_path"] = target, target
    pair = jupytext.read(target[: -len(".ipynb")] + ".py")
    if [c.source for c in pair.cells] != [c.source for c in nb.cells]:
        raise SystemExit(f"{executed} was run from other inputs than {target}'s py:percent pair; re-run it")
    bad = problems(nb)
    if bad:
        raise SystemExit(f"{executed} is not fit to publish:\n  " + "\n  ".join(bad))
    nbformat.write(nb, target)


if __name__ == "__main__":
    publish(*sys.argv[1:])
