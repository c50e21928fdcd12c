"""Importing the large dependencies quickly, and tqdm without its notebook warning.

A fresh process spends most of its first fit importing Bambi (which brings PyMC,
PyTensor, ArviZ, SciPy and Matplotlib) and JAX: tens of thousands of objects, and
Python's cyclic garbage collector walks all of them again and again while they are
created, without finding anything to free. :func:`import_heavy` pauses the collector for
the import only (about a sixth of the import time saved here) and, when it restores it,
moves everything that exists into the collector's permanent generation
(:func:`gc.freeze`): the modules, classes and functions just imported live as long as the
process, and the collector walked them again in each of its next full collections (about
0.4 s of the sleepstudy demo's first fit). Objects frozen this way are still freed when
their last reference goes; only reference cycles among them are left to the end of the
process. An import that another library registered as lazy (ArviZ does so for JAX) is
carried out under the same pause.
Its ``defer`` argument leaves modules a package imports eagerly but a fit never uses
(Bambi's plotting helpers, which bring all of ArviZ and seaborn; ArviZ's plotting library,
which brings Matplotlib) unexecuted until their first use: :func:`defer_module`.

:func:`import_tqdm_auto` imports the progress bars numpyro and our samplers use without
the warning ``tqdm.auto`` gives in a Jupyter kernel that lacks ipywidgets.
"""

from __future__ import annotations

import gc
import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType

__all__ = [
    "defer_duck_array_module",
    "defer_module",
    "import_heavy",
    "import_tqdm_auto",
    "paused_gc",
]

_LOADING = threading.RLock()
#: functions called with a deferred module once its code has run (by module name)
_ON_RUN: dict[str, list[Callable[[ModuleType], None]]] = {}


class _Deferred(ModuleType):
    """A module whose code runs at the first access to an attribute it lacks.

    Its import attributes (``__spec__``, ``__path__``, ``__file__``, ...) are set, so
    ``import name`` and ``from package import name`` bind it without running its code;
    any other attribute (``module.function``, ``from name import function``) runs the
    module's code in this same object first, as a plain import would have.
    """

    def __getattr__(self, attr: str):
        if attr == "__path__":  # a plain module, not a package: nothing to run
            raise AttributeError(attr)
        return getattr(_run(self), attr)


def _run(module: ModuleType) -> ModuleType:
    """Run a deferred module's code (once); ``module`` itself, loaded."""
    with _LOADING:
        if type(module) is _Deferred:
            module.__class__ = ModuleType
            try:
                module.__spec__.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(module.__spec__.name, None)
                raise
            for hook in _ON_RUN.pop(module.__spec__.name, ()):
                hook(module)
    return module


def _forwarder(module: ModuleType, attr: str) -> Callable:
    """A function that runs ``module`` and calls its ``attr`` (bound by ``from m import f``)."""

    def forward(*args, **kwargs):
        return getattr(_run(module), attr)(*args, **kwargs)

    forward.__name__ = forward.__qualname__ = attr
    forward.__doc__ = f"``{module.__name__}.{attr}``, imported at its first call."
    return forward


def defer_module(name: str, functions: Iterable[str] = ()) -> None:
    """Register module ``name`` so that its code runs at its first use, not at its import.

    For modules a package imports eagerly that are not needed. Nothing happens when
    ``name`` is already imported or cannot be found. The parent package is not imported:
    defer before importing it (as :func:`import_heavy` does), or after, when it is already
    imported (then the module is bound as its attribute, as an import would).

    ``functions`` names functions that importers take with ``from name import function``
    at their import (which would run the module): they get forwarders that run the module
    and call its function at their first call.

    Examples
    --------
    >>> import sys
    >>> from bayesmixed._imports import defer_module
    >>> defer_module("bayesmixed._imports")  # already imported: nothing to do
    >>> type(sys.modules["bayesmixed._imports"]).__name__
    'module'
    """
    if name in sys.modules:
        return
    parent, _, _ = name.rpartition(".")
    if parent:
        parent_spec = (sys.modules[parent].__spec__ if parent in sys.modules
                       else importlib.util.find_spec(parent))
        locations = getattr(parent_spec, "submodule_search_locations", None)
        spec = (importlib.machinery.PathFinder.find_spec(name, list(locations))
                if locations else None)
    else:
        spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    for function in functions:
        setattr(module, function, _forwarder(module, function))
    module.__class__ = _Deferred
    sys.modules[name] = module
    if parent in sys.modules:
        setattr(sys.modules[parent], name.rpartition(".")[2], module)


def defer_duck_array_module(name: str) -> None:
    """Defer ``name``, a duck-array library xarray supports, and keep xarray from running it.

    xarray checks every array it wraps against the array types of the duck-array libraries
    it supports, importing each library (if installed) for the check. Bambi installs
    pydata/sparse, which imports numba: about 0.9 s of every first fit here, for a type no
    array of a fit has. While ``name`` is deferred, no object can be an instance of its
    types, so xarray is told it has none; when the module's code runs (at its first real
    use), xarray's cached answer is dropped and xarray looks the types up again.
    Nothing happens when ``name`` is already imported, cannot be found, or this version of
    xarray keeps no such cache.

    Examples
    --------
    >>> from bayesmixed._imports import defer_duck_array_module
    >>> defer_duck_array_module("numpy") is None  # already imported: nothing to do
    True
    """
    if name in sys.modules:
        return
    defer_module(name)
    if type(sys.modules.get(name)) is not _Deferred:
        return
    try:
        from xarray.namedarray import pycompat

        cache = pycompat._cached_duck_array_modules
        absent = object.__new__(pycompat.DuckArrayModule)
        absent.module, absent.type, absent.available = None, (), False
        absent.version = pycompat.Version("0.0.0")
    except Exception:  # another xarray: it imports the module itself, as without us
        return
    if name in cache:
        return
    cache[name] = absent
    _ON_RUN.setdefault(name, []).append(lambda _module: cache.pop(name, None))


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector; on leaving, freeze what exists and resume it.

    For imports of large packages (see the module docstring): what they create lives as
    long as the process, so the collector gains nothing from walking it, neither while it
    is created nor in later collections. Nested uses act once, at the outermost; nothing
    is frozen when the collector was off to begin with (the caller manages it).

    Examples
    --------
    >>> import gc
    >>> from bayesmixed._imports import paused_gc
    >>> with paused_gc():
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
    """
    enabled = gc.isenabled()
    if enabled:
        gc.collect()  # the garbage that exists now is not frozen with the rest
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.enable()


def import_heavy(name: str, defer: Mapping[str, Iterable[str]] | None = None) -> ModuleType:
    """Import module ``name`` with the cyclic garbage collector paused (once per process).

    ``defer`` maps modules to leave unexecuted until their first use to the functions
    importers take from them (:func:`defer_module`); they are deferred only if this call
    imports ``name``. A module another library registered with a lazy loader (in
    ``sys.modules`` but not yet run) is run here, under the same pause.

    Examples
    --------
    >>> from bayesmixed._imports import import_heavy
    >>> import_heavy("json").__name__
    'json'
    """
    module = sys.modules.get(name)
    if module is not None and not isinstance(module, importlib.util._LazyModule):
        return module
    with paused_gc():
        if module is None:
            for deferred, functions in (defer or {}).items():
                defer_module(deferred, functions)
        module = importlib.import_module(name)
        getattr(module, "__name__", None)  # runs a lazily loaded module's code
    return module


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
