"""Sphinx configuration of the bayesmixed documentation.

Build (what ``tests/test_docs.py`` runs, warnings as errors)::

    python3 -m uv run --frozen sphinx-build -W --keep-going -b html docs docs/_build/html

Pages are Markdown (MyST); the tutorial notebooks under ``tutorials/`` (linked here as
``docs/tutorials``) are rendered with their stored outputs, never re-executed; the API
reference comes from the numpydoc docstrings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("MPLBACKEND", "Agg")

from bayesmixed import __version__  # noqa: E402

project = "bayesmixed"
author = "bayesmixed developers"
copyright = "bayesmixed developers"
release = __version__
version = __version__

extensions = [
    "myst_nb",  # Markdown pages and notebooks (includes myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "_inv", "**.ipynb_checkpoints", "tutorials/README*"]

# Pages written separately (benchmarks, calibration, ...) may or may not be there: every
# top-level page that the index does not list goes where its line ``OPTIONAL_PAGES``
# stands, these first, in this order.
OPTIONAL_PAGES = ("benchmarks", "calibration", "scale")

# notebooks: stored outputs, no execution in the docs build (the test suite executes them)
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Links to PyMC, ArviZ, pandas, NumPy, xarray and Matplotlib. The build runs offline (the
# test suite, warnings as errors), so the inventories are small committed files listing the
# objects we reference, with the projects' real addresses (docs/_inv/make_inventories.py).
sys.path.insert(0, str(Path(__file__).resolve().parent / "_inv"))
from make_inventories import OBJECTS  # noqa: E402

intersphinx_mapping = {
    key: (base, f"_inv/{key}.inv") for key, (_, _, base, _) in OBJECTS.items()
}

# API reference
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "furo"
html_title = f"bayesmixed {version}"
html_static_path: list[str] = []


def _optional_pages(app, docname, source):
    """Replace the ``OPTIONAL_PAGES`` line of the index by the unlisted pages present."""
    if docname != "index":
        return
    listed = {line.strip() for line in source[0].splitlines()} | {"index"}
    present = sorted(p.stem for p in Path(app.srcdir).glob("*.md") if p.stem not in listed)
    rank = {name: i for i, name in enumerate(OPTIONAL_PAGES)}
    present.sort(key=lambda name: (rank.get(name, len(rank)), name))
    source[0] = source[0].replace("OPTIONAL_PAGES\n", "".join(f"{p}\n" for p in present))


def setup(app):
    app.connect("source-read", _optional_pages)
    return {"parallel_read_safe": True}
