"""Write the small Sphinx inventories under ``docs/_inv/`` (run it after editing ``OBJECTS``).

The docs build runs offline (in the test suite, warnings as errors), so intersphinx cannot
download the projects' ``objects.inv``. These files list only the objects our pages and
docstrings reference, with the real addresses of each project's stable documentation;
``docs/conf.py`` maps every project to its file. Add an object here, run
``python3 -m uv run --frozen python docs/_inv/make_inventories.py`` and commit the ``.inv``.
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: project -> (name, version, base URL, [(object, domain:role, address relative to base)])
OBJECTS: dict[str, tuple[str, str, str, list[tuple[str, str, str]]]] = {
    "numpy": ("NumPy", "stable", "https://numpy.org/doc/stable/", [
        ("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html"),
        ("numpy.save", "py:function", "reference/generated/numpy.save.html"),
        ("numpy.random.Generator", "py:class",
         "reference/random/generator.html#numpy.random.Generator"),
    ]),
    "pandas": ("pandas", "stable", "https://pandas.pydata.org/docs/", [
        ("pandas.DataFrame", "py:class", "reference/api/pandas.DataFrame.html"),
        ("pandas.Series", "py:class", "reference/api/pandas.Series.html"),
        ("pandas.to_numeric", "py:function", "reference/api/pandas.to_numeric.html"),
    ]),
    "xarray": ("xarray", "stable", "https://docs.xarray.dev/en/stable/", [
        ("xarray.Dataset", "py:class", "generated/xarray.Dataset.html"),
        ("xarray.DataArray", "py:class", "generated/xarray.DataArray.html"),
        ("xarray.DataTree", "py:class", "generated/xarray.DataTree.html"),
        ("xarray.concat", "py:function", "generated/xarray.concat.html"),
    ]),
    "pymc": ("PyMC", "stable", "https://www.pymc.io/projects/docs/en/stable/", [
        ("pymc.Model", "py:class", "api/generated/pymc.Model.html"),
        ("pymc.sample", "py:function", "api/generated/pymc.sample.html"),
        ("pymc.sample_posterior_predictive", "py:function",
         "api/generated/pymc.sample_posterior_predictive.html"),
    ]),
    # ArviZ 1.x: ``arviz.loo`` and ``arviz.compare`` are arviz-stats' functions; the plots
    # are arviz-plots'. One inventory, addresses relative to the projects' common root.
    "arviz": ("ArviZ", "latest", "https://python.arviz.org/projects/", [
        ("arviz.loo", "py:function", "stats/en/latest/api/generated/arviz_stats.loo.html"),
        ("arviz.compare", "py:function",
         "stats/en/latest/api/generated/arviz_stats.compare.html"),
        ("arviz_stats.loo", "py:function",
         "stats/en/latest/api/generated/arviz_stats.loo.html"),
        ("arviz_stats.compare", "py:function",
         "stats/en/latest/api/generated/arviz_stats.compare.html"),
        *[
            (f"arviz_plots.{name}", "py:function",
             f"plots/en/latest/api/generated/arviz_plots.{name}.html")
            for name in ("plot_dist", "plot_forest", "plot_pair", "plot_ppc_dist",
                         "plot_trace_dist")
        ],
    ]),
    "matplotlib": ("Matplotlib", "stable", "https://matplotlib.org/stable/", [
        ("matplotlib.figure.Figure", "py:class",
         "api/_as_gen/matplotlib.figure.Figure.html"),
    ]),
}


def inventory_bytes(project: str, version: str, objects: list[tuple[str, str, str]]) -> bytes:
    """Sphinx inventory version 2: a text header and zlib-compressed entries."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    ).encode()
    lines = "".join(f"{name} {role} 1 {uri} -\n" for name, role, uri in sorted(objects))
    return header + zlib.compress(lines.encode())


def main() -> None:
    for key, (project, version, _base, objects) in OBJECTS.items():
        (HERE / f"{key}.inv").write_bytes(inventory_bytes(project, version, objects))


if __name__ == "__main__":
    main()
