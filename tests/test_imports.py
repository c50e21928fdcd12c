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
        gc.enable() if was else gc.disable()
