"""The book as its readers see it: the notebooks agree with their py:percent pairs, the book builds offline with
warnings as errors, and the built HTML reads cleanly (real tables, no tracebacks, warnings, progress bars or
machine-local paths, captioned figures, the answer on the first screen, the claims in the paper's order).

The book is built once per test session (or read from $L2L_BOOK_HTML, a built `_build/html`, as CI does).
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
from jupytext.compare import compare_notebooks

from l2l.paper import CLAIMS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(ROOT.glob("notebooks/*.ipynb")) + sorted(ROOT.glob("book/*.ipynb"))
CHAPTERS = [f"notebooks/{p.stem}" for p in sorted(ROOT.glob("notebooks/*.ipynb"))]
PAGES = ["book/intro", "book/summary", "book/method", "book/use", *CHAPTERS]

# The chapters' committed outputs predate issue 14; they pass once re-executed and re-published through
# tools/publish_notebook.py with captioned figures (l2l.book.figure) and relative paths. Remove this mark then.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\\])/(home|root|tmp|work|Users|mnt|opt|var|srv|scratch|private)/")
PIPE_TABLE = re.compile(r"\|\s*:?(-{3,}|[\u2013\u2014]+):?\s*\|")  # |---| (or its smart-dash form)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_no_machine_local_path_in_a_committed_notebook(notebook):
    """Not in what readers see (test_no_machine_local_paths) and not in the file either: papermill's metadata
    once recorded where a run read and wrote its notebook."""
    found = [line.strip() for line in notebook.read_text().splitlines() if ABSOLUTE_PATH.search(line)]
    assert not found, found[:3]


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


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    """The built book: one build, with warnings as errors, shared by every test below."""
    if os.environ.get("L2L_BOOK_HTML"):
        return Path(os.environ["L2L_BOOK_HTML"])
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    assert jb, "jupyter-book is not installed (pip install -e '.[dev]')"
    out = tmp_path_factory.mktemp("book")
    result = subprocess.run([jb, "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out / "_build" / "html"


def article(html: Path, page: str):
    """The page's article (what a reader reads), parsed; None if the page was not built."""
    from bs4 import BeautifulSoup

    path = html / f"{page}.html"
    assert path.exists(), f"{page} was not built"
    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
    main = soup.select_one("article.bd-article") or soup.body
    for tag in main.select("script, style"):
        tag.decompose()
    return main


def outputs_and_prose(main) -> str:
    """The text a reader sees, less the notebooks' input code (which may legitimately hold table syntax)."""
    for tag in main.select("div.cell_input"):
        tag.decompose()
    return main.get_text("\n")


def test_book_builds_every_page(html):
    for page in PAGES:
        assert (html / f"{page}.html").exists(), page


@pytest.mark.parametrize("page", PAGES)
def test_no_raw_pipe_tables(html, page):
    text = outputs_and_prose(article(html, page))
    found = [line for line in text.splitlines() if PIPE_TABLE.search(line)]
    assert not found, f"{page} shows a Markdown table as text: {found[0][:200]}"


@pytest.mark.parametrize("page", PAGES)
def test_no_tracebacks_warnings_or_progress_bars(html, page):
    main = article(html, page)
    assert not main.select(".output.traceback, .output.stderr"), f"{page} shows an error or stderr output"
    text = main.get_text("\n")
    for bad in ("Traceback (most recent call last)", "TqdmWarning", "UserWarning", "█", "it/s]"):
        assert bad not in text, f"{page} shows {bad!r}"


@pytest.mark.parametrize("page", PAGES)
def test_no_machine_local_paths(html, page):
    text = article(html, page).get_text("\n")
    found = [line.strip() for line in text.splitlines() if ABSOLUTE_PATH.search(line)]
    assert not found, f"{page} shows a path of the machine it ran on: {found[0][:200]}"


@pytest.mark.parametrize("page", CHAPTERS)
def test_every_figure_of_a_chapter_is_numbered_and_captioned(html, page):
    main = article(html, page)
    images = main.select("img")
    assert images, f"{page} has no figure"
    for img in images:
        figure = img.find_parent("figure")
        caption = figure.select_one("figcaption") if figure else None
        assert caption and caption.get_text(strip=True), f"{page}: {img.get('src')} has no caption"
        assert caption.select_one(".caption-number"), f"{page}: {img.get('src')}'s caption is not numbered"


def claim_order() -> list[str]:
    return [c.figure for c in CLAIMS for _ in c.metrics]


def test_summary_has_one_row_per_claim_in_paper_order(html):
    main = article(html, "book/summary")
    table = main.select_one("table")
    assert table is not None, "the summary shows no table"
    rows = table.select("tbody tr")
    assert [r.select("td")[0].get_text(strip=True) for r in rows] == claim_order()
    verdicts = {r.select("td")[2].get_text(strip=True).replace("\u2019", "'") for r in rows}
    assert verdicts <= {"reproduced", "not reproduced", "not significant", "not tested at the paper's scale"}
    tally = table.find_previous("p").get_text(" ", strip=True).replace("\u2019", "'")
    assert tally.startswith(f"Of the paper's {len(rows)} comparisons"), tally


def test_intro_answers_first_and_cites_last(html):
    main = article(html, "book/intro")
    table = main.select_one("table")
    assert table is not None, "the intro shows no table"
    first_heading = main.select_one("h2")
    assert first_heading is None or table.sourceline < first_heading.sourceline, "the table is not on the first screen"
    rows = table.select("tbody tr")
    assert len(rows) == len(CLAIMS)
    assert all(r.select_one("a[href$='.html']") for r in rows), "every row links to its chapter"
    bibtex = main.find(string=re.compile("@inproceedings"))
    assert bibtex is not None and bibtex.find_parent("section").select_one("h2").get_text(strip=True).startswith("Citation")


def test_pages_link_the_repository_and_offer_the_notebook(html):
    page = (html / "notebooks" / f"{Path(CHAPTERS[0]).name}.html").read_text(encoding="utf-8")
    assert "https://github.com/l2l-repro/l2l" in page
    assert ".ipynb" in page and "download" in page.lower()
