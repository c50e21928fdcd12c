"""Documentation: the site builds with warnings as errors, the tutorials execute.

The Sphinx build renders the notebooks with their stored outputs; executing them is a
separate (slow) test that runs them top to bottom with short chains
(``BAYESMIXED_QUICK=1``) on a copy, so a tutorial that stops working fails the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))


def test_tutorials_present_and_linked():
    names = {p.stem for p in TUTORIALS}
    assert {"sleepstudy", "lme4_syntax"} <= names
    index = (DOCS / "index.md").read_text()
    for name in names:
        assert f"tutorials/{name}" in index, f"tutorial {name} is not in the docs' toctree"
    assert (DOCS / "tutorials").resolve() == (ROOT / "tutorials").resolve()


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorials_are_committed_executed(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "run the notebook before committing"
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert images > 0
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_sphinx_build_strict(tmp_path):
    """``sphinx-build -W``: a broken link, reference or docstring fails the suite."""
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    out = tmp_path / "html"
    cmd = [
        sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
        "-d", str(tmp_path / "doctrees"), str(DOCS), str(out),
    ]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-5000:]
    for page in ("index", "getting-started", "formulas", "priors", "model", "predictions",
                 "plots", "lme4-brms", "api", "tutorials/sleepstudy", "tutorials/lme4_syntax",
                 "families", "troubleshooting", "references", "changelog", "citing"):
        assert (out / f"{page}.html").exists(), page
    api = (out / "api.html").read_text()
    for name in ("bayesmixed.Model", "bayesmixed.Fit", "bayesmixed.plot_groups",
                 "bayesmixed.compare"):
        assert f'id="{name}"' in api, name
    # cross-links from the offline inventories (docs/_inv): the projects' real addresses
    for url in ("https://pandas.pydata.org/docs/reference/api/pandas.DataFrame.html",
                "https://www.pymc.io/projects/docs/en/stable/api/generated/pymc.Model.html",
                "https://docs.xarray.dev/en/stable/generated/xarray.Dataset.html",
                "https://numpy.org/doc/stable/reference/generated/numpy.ndarray.html",
                "https://python.arviz.org/projects/stats/en/latest/api/generated/"
                "arviz_stats.loo.html"):
        assert f'href="{url}"' in api, url
    tutorial = (out / "tutorials" / "sleepstudy.html").read_text()
    assert tutorial.count("<img") >= 8  # the figures are rendered from the stored outputs


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_executes(path, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("BAYESMIXED_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    images = sum(
        "image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
        for o in c.outputs
    )
    assert images > 0
