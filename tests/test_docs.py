"""Documentation: the site builds with warnings as errors, the tutorials execute.

The Sphinx build renders the notebooks with their stored outputs; executing them is a
separate (slow) test that runs them top to bottom with short chains
(``BAYESMIXED_QUICK=1``) on a copy, so a tutorial that stops working fails the suite.

Stored outputs are current: ``tools/refresh_notebooks.py`` executes each notebook with
full chains and stamps it (``metadata["bayesmixed"]``) with a hash of the package's code
and of the notebook's code cells, and with the versions of the libraries that shape the
outputs (PyMC, JAX, ArviZ, ...). ``test_tutorial_outputs_are_current`` recomputes both.
We compare stamps rather than re-run and compare numbers: a re-run with full chains takes
minutes, and numbers drawn on another CPU or BLAS can differ in the last digits, so a
number check is either slow and flaky or too loose to notice a changed default. The hash
leaves out comments, docstrings and formatting (they do not change outputs), so it fails
only when code that runs changed; then re-run the script and commit the notebooks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))
REFRESH = "python3 -m uv run --frozen python tools/refresh_notebooks.py"


def _refresh_tool():
    """``tools/refresh_notebooks.py`` as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(
        "refresh_notebooks", ROOT / "tools" / "refresh_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_outputs_are_current(path):
    """The stored outputs were produced by this code, these cells and these libraries."""
    import nbformat

    tool = _refresh_tool()
    nb = nbformat.read(path, as_version=4)
    stamp = nb.metadata.get("bayesmixed")
    assert stamp, f"{path.name} was not executed by tools/refresh_notebooks.py; run {REFRESH}"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert stamp["source_hash"] == tool.source_hash(code), (
        f"{path.name}'s outputs were produced by other code (the package or the notebook's "
        f"cells changed since); run {REFRESH} and commit the notebook"
    )
    changed = {
        name: (stamp["versions"].get(name), now)
        for name, now in tool.installed_versions().items()
        if stamp["versions"].get(name) != now
    }
    assert not changed, f"{path.name} ran with other versions {changed}; run {REFRESH}"


def test_source_hash_ignores_comments_and_docstrings_only():
    tool = _refresh_tool()
    plain = tool._code_without_docstrings("def f(x):\n    return x + 1\n")
    documented = tool._code_without_docstrings(
        'def f(x):  # add one\n    """Add one."""\n\n    return (x + 1)\n'
    )
    changed = tool._code_without_docstrings("def f(x):\n    return x + 2\n")
    assert plain == documented and plain != changed
    assert tool.source_hash(["a = 1"]) != tool.source_hash(["a = 2"])  # the notebook's code
    assert tool.source_hash(["a = 1"]) == tool.source_hash(["a = 1", tool.VERSIONS_CODE])


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_ends_with_versions(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    last = nb.cells[-1]
    assert last.cell_type == "code" and "version(" in last.source
    text = "".join(o.get("text", "") for o in last.outputs)
    for name in ("bayesmixed", "pymc", "bambi", "jax", "numpyro", "arviz", "python"):
        assert re.search(rf"^{name}\s+\d+\.\d+", text, flags=re.MULTILINE), name


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_outputs_hold_no_local_paths(path):
    text = json.dumps([c.get("outputs", []) for c in json.loads(path.read_text())["cells"]])
    local = {str(ROOT), sys.prefix, str(Path.home())}
    assert not [d for d in local if d in text]
    absolute = re.findall(r"(?<![\w.<>~-])/(?:home|root|Users|work|tmp|opt)/[^\s\"']*", text)
    assert not absolute, absolute[:3]


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
