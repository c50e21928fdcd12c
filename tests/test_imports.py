"""Importing the large dependencies: the collector is paused only while importing, and a
notebook without ipywidgets gets no tqdm warning from a fit (``bayesmixed._imports``)."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

from bayesmixed._imports import import_heavy

# a process that looks like a Jupyter kernel to tqdm (ipywidgets is not installed)
_KERNEL = textwrap.dedent(
    """
    import sys, types, warnings
    import IPython
    sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        {body}
    print(sum("IProgress not found" in str(w.message) for w in caught))
    """
)


def _tqdm_warnings(body: str) -> int:
    code = _KERNEL.format(body=textwrap.indent(textwrap.dedent(body), " " * 4).strip())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip().splitlines()[-1])


def test_numpyro_in_a_notebook_without_ipywidgets_warns_unless_imported_through_us():
    assert _tqdm_warnings("import numpyro.infer") == 1  # what notebooks showed
    assert _tqdm_warnings(
        """
        from bayesmixed._imports import import_tqdm_auto
        import_tqdm_auto()
        import numpyro.infer
        """
    ) == 0


def test_engines_import_tqdm_quietly_before_sampling(monkeypatch):
    """``engines.run`` imports tqdm through :func:`import_tqdm_auto` before any engine."""
    from bayesmixed import engines
    from bayesmixed.engines.common import SamplerSettings

    calls = []
    monkeypatch.setattr(engines, "import_tqdm_auto", lambda: calls.append("tqdm"))

    class Engine:
        @staticmethod
        def fit(design, priors, settings):
            calls.append("fit")
            raise RuntimeError("stop")

    monkeypatch.setattr(engines, "engine", lambda name: Engine)
    with pytest.raises(RuntimeError, match="stop"):
        engines.run(None, None, SamplerSettings(engine="marginal"))
    assert calls == ["tqdm", "fit"]


@pytest.mark.parametrize("enabled", [True, False])
def test_import_heavy_restores_the_collector(enabled):
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert import_heavy("json").__name__ == "json"
        assert import_heavy("bayesmixed.prior_numpy").__name__ == "bayesmixed.prior_numpy"
        with pytest.raises(ModuleNotFoundError):
            import_heavy("bayesmixed._no_such_module")
        assert gc.isenabled() is enabled
    finally:
        gc.unfreeze()  # this test process keeps its collector as it was
        gc.enable() if was else gc.disable()


def test_a_first_import_of_bambi_and_jax_leaves_their_objects_to_no_collection():
    """The modules' objects are frozen (out of the collector's walks), JAX too although
    ArviZ registered it as a lazy module first; a later full collection is quick."""
    out = _run(
        """
        import gc, sys, time
        import bayesmixed as bm
        from bayesmixed._bambi import family_names
        from bayesmixed.engines.common import configure_jax
        family_names()
        was_lazy = type(sys.modules.get("jax")).__name__
        after_bambi = gc.get_freeze_count()
        configure_jax()
        after_jax = gc.get_freeze_count()
        start = time.perf_counter()
        gc.collect()
        print(was_lazy, after_bambi, after_jax, gc.isenabled(), time.perf_counter() - start)
        """
    )
    was_lazy, after_bambi, after_jax, enabled, seconds = out
    assert was_lazy == "_LazyModule"  # arviz-base's lazy registration, run by import_heavy
    assert int(after_bambi) > 150_000  # Bambi, PyMC, PyTensor, SciPy, xarray: all frozen
    assert int(after_jax) > int(after_bambi) + 50_000
    assert enabled == "True"
    assert float(seconds) < 0.1  # a full collection walks only what came after


def _run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


def test_a_fit_leaves_the_plotting_libraries_unimported_until_used():
    """Bambi's plots (``bambi.interpret``: all of ArviZ, seaborn) and ``arviz_plots``
    (Matplotlib) are not run by a fit and its summary, but work on first use."""
    out = _run(
        """
        import sys
        import bayesmixed as bm
        fit = bm.Model("Reaction ~ Days + (1 | Subject)", bm.datasets.sleepstudy()).fit(
            draws=50, tune=50, chains=1, progressbar=False)
        str(fit)
        print(*(m in sys.modules for m in ("seaborn", "matplotlib", "arviz")),
              *(type(sys.modules[m]).__name__ for m in ("bambi.interpret", "arviz_plots",
                                                         "scipy.signal")))
        from bambi.interpret import predictions
        import bambi
        print(callable(predictions), callable(bambi.interpret.plot_slopes),
              "seaborn" in sys.modules, type(sys.modules["bambi.interpret"]).__name__)
        import matplotlib
        matplotlib.use("Agg")
        bm.plot_trace(fit)
        import matplotlib.style
        print(type(sys.modules["arviz_plots"]).__name__,
              "arviz-variat" in matplotlib.style.available)
        print(type(sys.modules["scipy.signal"]).__name__,  # densities of the trace plot
              type(sys.modules["scipy.signal.windows"]).__name__)
        """
    )
    assert out == ["False", "False", "False", "_Deferred", "_Deferred", "_Deferred",
                   "True", "True", "True", "module", "module", "True", "module", "module"]


def test_numpy_f2py_and_testing_wait_for_their_first_use():
    """SciPy's array-api-compat copies NumPy's namespace at import, which imported
    ``numpy.f2py`` and ``numpy.testing`` (with unittest); a fit leaves them unrun, and
    they work when used."""
    out = _run(
        """
        import sys
        import bayesmixed as bm
        fit = bm.Model("Reaction ~ Days + (1 | Subject)", bm.datasets.sleepstudy()).fit(
            draws=50, tune=50, chains=1, progressbar=False)
        str(fit)
        print(*(type(sys.modules[m]).__name__ for m in ("numpy.f2py", "numpy.testing")),
              "unittest" in sys.modules)
        from numpy.testing import assert_allclose
        assert_allclose(1.0, 1.0)
        import numpy as np
        print(type(sys.modules["numpy.testing"]).__name__, callable(np.f2py.run_main),
              "unittest" in sys.modules)
        """
    )
    assert out == ["_Deferred", "_Deferred", "False", "module", "True", "True"]


def test_a_function_taken_from_a_deferred_module_runs_it_at_its_first_call(tmp_path):
    """``from arviz_plots import plot_dist`` in Bambi binds a forwarder, not the module."""
    _package(tmp_path, "taken")
    out = _run(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from bayesmixed._imports import defer_module
        defer_module("taken.sub", ["double"])
        from taken.sub import double
        module = sys.modules["taken.sub"]
        print(type(module).__name__, double.__name__)
        print(double(21), type(module).__name__, module.double is double, module.double(1))
        """
    )
    assert out == ["_Deferred", "double", "sub", "ran", "42", "module", "False", "2"]


def _package(root, name: str, init: str = "") -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(init)
    (root / name / "sub.py").write_text(
        "print('sub ran')\nVALUE = 42\n\n\ndef double(x):\n    return 2 * x\n")


def test_deferring_a_module_runs_its_code_at_first_attribute_access(tmp_path):
    _package(tmp_path, "eager", init="from eager import sub\n")  # as bambi does
    _package(tmp_path, "plain")
    out = _run(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from bayesmixed._imports import defer_module
        defer_module("eager.sub")             # before its parent is imported
        import eager
        print(type(eager.sub).__name__, "VALUE" in vars(eager.sub))
        print(eager.sub.VALUE, type(eager.sub).__name__)
        import plain
        defer_module("plain.sub")             # after
        from plain import sub
        print(type(sub).__name__)
        from plain.sub import VALUE
        print(VALUE)
        defer_module("no_such_module_here")
        print("no_such_module_here" in sys.modules)
        """
    )
    assert out == ["_Deferred", "False", "sub", "ran", "42", "module", "_Deferred", "sub",
                   "ran", "42", "False"]


def test_a_deferred_module_that_fails_is_not_left_half_imported(tmp_path):
    (tmp_path / "broken_mod.py").write_text("x = 1\nraise ValueError('broken')\n")
    out = _run(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from bayesmixed._imports import defer_module
        defer_module("broken_mod")
        import broken_mod
        try:
            broken_mod.x
        except ValueError as err:
            print(err, "broken_mod" in sys.modules)
        """
    )
    assert out == ["broken", "False"]


def test_a_fit_leaves_sparse_and_numba_unimported_and_xarray_still_knows_sparse():
    """pydata/sparse (and numba under it), which Bambi imports and xarray checks every
    array against, is not run by a fit; once used, xarray treats its arrays as before."""
    out = _run(
        """
        import sys
        import bayesmixed as bm
        fit = bm.Model("Reaction ~ Days + (1 | Subject)", bm.datasets.sleepstudy()).fit(
            draws=50, tune=50, chains=1, progressbar=False)
        str(fit)
        print("numba" in sys.modules, type(sys.modules["sparse"]).__name__)
        import numpy as np
        import sparse
        import xarray as xr
        arr = xr.DataArray(sparse.COO.from_numpy(np.eye(3)), dims=("a", "b"))
        dense = arr.as_numpy()
        print(type(sys.modules["sparse"]).__name__, "numba" in sys.modules,
              type(arr.data).__name__, type(dense.data).__name__, float(dense.sum()))
        """
    )
    assert out == ["False", "_Deferred", "module", "True", "COO", "ndarray", "3.0"]
