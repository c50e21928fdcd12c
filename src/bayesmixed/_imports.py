"""Importing the large dependencies quickly, and tqdm without its notebook warning.

A fresh process spends most of its first fit importing Bambi (which brings PyMC,
PyTensor, ArviZ, SciPy and Matplotlib) and JAX: tens of thousands of objects, and
Python's cyclic garbage collector walks all of them again and again while they are
created, without finding anything to free. :func:`import_heavy` pauses the collector for
the import only (about a sixth of the import time saved here) and restores it after.

:func:`import_tqdm_auto` imports the progress bars numpyro and our samplers use without
the warning ``tqdm.auto`` gives in a Jupyter kernel that lacks ipywidgets.
"""

from __future__ import annotations

import gc
import importlib
import sys
import warnings
from types import ModuleType

__all__ = ["import_heavy", "import_tqdm_auto"]


def import_heavy(name: str) -> ModuleType:
    """Import module ``name`` with the cyclic garbage collector paused (once per process).

    Examples
    --------
    >>> from bayesmixed._imports import import_heavy
    >>> import_heavy("json").__name__
    'json'
    """
    module = sys.modules.get(name)
    if module is not None:
        return module
    enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        if enabled:
            gc.enable()


def import_tqdm_auto() -> ModuleType:
    """Import ``tqdm.auto`` without its "IProgress not found" warning (a ``TqdmWarning``).

    In a Jupyter kernel without ipywidgets, the first import of ``tqdm.auto`` in a process
    warns and falls back to text progress bars. numpyro imports it, so the first fit of a
    notebook session printed that warning. Text bars are fine there (and the fit shows
    none under ``CI``), so the engines import it through here first (see
    :func:`bayesmixed.engines.run`). Other warnings are left alone.

    Examples
    --------
    >>> from bayesmixed._imports import import_tqdm_auto
    >>> import_tqdm_auto().__name__
    'tqdm.auto'
    """
    module = sys.modules.get("tqdm.auto")
    if module is not None:
        return module
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        return importlib.import_module("tqdm.auto")
