"""Re-execute the tutorials in place, with full chains, and stamp them with the code they ran.

Run from the repository root after a change to the package (or to the locked versions)::

    python3 -m uv run --frozen python tools/refresh_notebooks.py            # all tutorials
    python3 -m uv run --frozen python tools/refresh_notebooks.py tutorials/sleepstudy.ipynb

Each notebook is executed top to bottom in its own kernel (``BAYESMIXED_QUICK`` unset: the
chains the text describes; ``CI=1``: no progress bars in the outputs), then

* a last "Versions" cell is added if the notebook has none (bayesmixed, PyMC, Bambi, JAX,
  numpyro, ArviZ and Python as executed),
* local paths in the stored outputs (this checkout, the virtual environment, the home
  directory, e.g. in the file names of warnings) are replaced by short placeholders,
* ``metadata["bayesmixed"]`` records :func:`source_hash` of the package and the notebook's
  code and the versions of the libraries that shape the outputs (:data:`OUTPUT_PACKAGES`).

``tests/test_docs.py`` compares these stamps with the checkout: a notebook whose stamp no
longer matches was run with other code and fails the suite until this script is re-run.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import site
import sys
import sysconfig
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUTORIALS = ROOT / "tutorials"
PACKAGE = ROOT / "src" / "bayesmixed"

#: Libraries whose versions change what the notebooks print and draw (sampling, summaries,
#: plots), recorded at execution and compared by the freshness test.
OUTPUT_PACKAGES = (
    "bambi",
    "formulae",
    "pymc",
    "pytensor",
    "jax",
    "jaxlib",
    "numpyro",
    "arviz",
    "arviz-base",
    "arviz-stats",
    "arviz-plots",
    "numpy",
    "scipy",
    "pandas",
    "xarray",
    "matplotlib",
)

VERSIONS_MARKDOWN = "## Versions\n\nThe versions this notebook was executed with."
VERSIONS_CODE = """\
import platform
from importlib.metadata import version

for name in ("bayesmixed", "pymc", "bambi", "jax", "numpyro", "arviz"):
    print(f"{name:<11}{version(name)}")
print(f"{'python':<11}{platform.python_version()}")"""


def _code_without_docstrings(text: str) -> str:
    """Python source with comments, docstrings and formatting removed (``ast.unparse``)."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def source_hash(notebook_code: list[str]) -> str:
    """SHA-256 of the package's code (``src/bayesmixed/**/*.py``) and a notebook's code cells.

    Comments, docstrings and formatting of the package are left out (the outputs do not
    depend on them), as are the notebook's markdown cells and its Versions cell.

    Parameters
    ----------
    notebook_code : list of str
        Sources of the notebook's code cells, in order.

    Returns
    -------
    str
        Hex digest.
    """
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
        digest.update(_code_without_docstrings(path.read_text(encoding="utf-8")).encode())
        digest.update(b"\0")
    for code in notebook_code:
        if code.strip() != VERSIONS_CODE:
            digest.update(code.strip().encode() + b"\0")
    return digest.hexdigest()


def installed_versions() -> dict[str, str]:
    """Installed versions of :data:`OUTPUT_PACKAGES` (``"missing"`` when not installed)."""
    out = {}
    for name in OUTPUT_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def _local_prefixes() -> list[tuple[str, str]]:
    """Local directories that may appear in outputs, with placeholders; longest first."""
    named = [
        (sysconfig.get_paths()["purelib"], "<site-packages>"),
        *((p, "<site-packages>") for p in site.getsitepackages()),
        (sysconfig.get_paths()["stdlib"], "<python>"),
        (str(ROOT), "<repository>"),
        (sys.prefix, "<venv>"),
        (str(Path.home()), "~"),
    ]
    pairs = {d: p for d, p in named} | {os.path.realpath(d): p for d, p in named}
    return sorted(pairs.items(), key=lambda item: -len(item[0]))


def scrub(text: str) -> str:
    """Replace local directories in ``text`` by placeholders (``<site-packages>/arviz/...``)."""
    for prefix, placeholder in _local_prefixes():
        text = text.replace(prefix, placeholder)
    return text


def _scrub_outputs(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.outputs:
            if "text" in out:
                out["text"] = scrub(out["text"])
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    out["data"][mime] = scrub(value)
            if "traceback" in out:
                out["traceback"] = [scrub(line) for line in out["traceback"]]


def _ensure_versions_cell(nb) -> None:
    import nbformat

    codes = [c for c in nb.cells if c.cell_type == "code"]
    if codes and codes[-1].source.strip() == VERSIONS_CODE:
        return
    nb.cells.append(nbformat.v4.new_markdown_cell(VERSIONS_MARKDOWN))
    nb.cells.append(nbformat.v4.new_code_cell(VERSIONS_CODE))


def refresh(path: Path, *, timeout: int = 1800) -> float:
    """Execute one notebook in place with full chains and stamp it; return the seconds taken."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    _ensure_versions_cell(nb)
    saved = dict(os.environ)
    os.environ.pop("BAYESMIXED_QUICK", None)  # full chains
    os.environ["CI"] = "1"  # no progress bars in the stored outputs
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    start = time.perf_counter()
    try:
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    seconds = time.perf_counter() - start
    _scrub_outputs(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    nb.metadata["bayesmixed"] = {
        "source_hash": source_hash(code),
        "versions": installed_versions(),
        "python": ".".join(map(str, sys.version_info[:2])),
    }
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> None:
    """Command line: refresh the notebooks given, or every ``tutorials/*.ipynb``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to refresh (default: tutorials/*.ipynb)")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(TUTORIALS.glob("*.ipynb"))
    for path in paths:
        seconds = refresh(path.resolve())
        print(f"{path}: executed in {seconds:.0f} s, stamped", flush=True)


if __name__ == "__main__":
    main()
