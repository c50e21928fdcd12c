"""Every Python example of README.md and docs/*.md runs.

Each page's ```` ```python ```` blocks run in order in one namespace per page, in a temporary
working directory, with ``Model.fit`` capped to short chains (the examples' numbers are not
checked here, only that the code runs as written). A block that starts with ``>>>`` is a
doctest: its printed output must match too.

A block that is intentionally not runnable (a fragment that needs data the page does not
build) is preceded by the line ``<!-- doc-example: skip -->``; keep those rare, and say on the
page what the fragment needs.
"""

from __future__ import annotations

import doctest
import re
import warnings
from pathlib import Path

import pytest

import bayesmixed as bm

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_MARK = "<!-- doc-example: skip -->"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """``(line, code, skipped)`` of every ```` ```python ```` block of a page."""
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        out.append((text[: m.start()].count("\n") + 1, m.group(1), before == SKIP_MARK))
    return out


def _pages_with_blocks():
    params = []
    for page in PAGES:
        text = page.read_text()
        blocks = python_blocks(text)
        if not blocks:
            continue
        fits = any(".fit(" in code for _, code, skipped in blocks if not skipped)
        marks = [pytest.mark.slow] if fits else []
        params.append(pytest.param(page, marks=marks, id=str(page.relative_to(ROOT))))
    return params


def test_block_extraction():
    text = (
        "a\n```python\nx = 1\n```\n" + SKIP_MARK + "\n```python\ny = x\n```\n"
        "```bash\nls\n```\n"
    )
    assert python_blocks(text) == [(2, "x = 1\n", False), (6, "y = x\n", True)]


def test_skipped_blocks_are_rare():
    skipped = [
        (page.name, line)
        for page in PAGES
        for line, _, skip in python_blocks(page.read_text())
        if skip
    ]
    total = sum(len(python_blocks(page.read_text())) for page in PAGES)
    assert total >= 15
    assert len(skipped) <= 3, skipped


@pytest.fixture
def short_chains(monkeypatch):
    """``Model.fit`` with at most 2 chains x (150 tuning + 100 draws)."""
    from bayesmixed.model import Model

    original = Model.fit

    def fit(self, **kwargs):
        kwargs["draws"] = min(kwargs.get("draws", 100), 100)
        kwargs["tune"] = min(kwargs.get("tune", 150), 150)
        kwargs["chains"] = min(kwargs.get("chains", 2), 2)
        kwargs["progressbar"] = False
        return original(self, **kwargs)

    monkeypatch.setattr(Model, "fit", fit)


@pytest.mark.parametrize("page", _pages_with_blocks())
def test_page_examples_run(page, short_chains, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"doc_example_{page.stem}"}
    if page.parent.name == "docs":  # the site's pages assume the README's import
        namespace["bm"] = bm
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    parser = doctest.DocTestParser()
    for line, code, skipped in python_blocks(page.read_text()):
        if skipped:
            continue
        where = f"{page.name}:{line}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bm.errors.ConvergenceWarning)
            if code.lstrip().startswith(">>>"):
                test = parser.get_doctest(code, namespace, where, str(page), line)
                result = runner.run(test, clear_globs=False)
                assert result.failed == 0, f"doctest at {where} failed (output above)"
            else:
                exec(compile(code, where, "exec"), namespace)
        plt.close("all")
