"""bayesmixed: Bayesian mixed-effects models with lme4 formulas, sampled on JAX.

>>> import bayesmixed as bm
>>> model = bm.Model("Reaction ~ Days + (Days | Subject)", bm.datasets.sleepstudy())
>>> fit = model.fit()                                           # doctest: +SKIP
>>> fit.summary()                                               # doctest: +SKIP

Heavy modules (PyMC, Bambi, JAX) load on first use, so ``import bayesmixed`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bayesmixed._imports import paused_gc

with paused_gc():  # pandas and NumPy, imported here (see bayesmixed._imports)
    from bayesmixed import datasets, errors
    from bayesmixed._version import __version__
    from bayesmixed.engines.common import configure_host_devices

# parallel chains need JAX to see several CPU devices; only possible before JAX starts
configure_host_devices()

if TYPE_CHECKING:
    from bayesmixed.engines import clear_compiled
    from bayesmixed.formula import Formula
    from bayesmixed.loading import load
    from bayesmixed.model import Model
    from bayesmixed.plots import (
        conditional_effects,
        plot_conditional,
        plot_correlations,
        plot_fit,
        plot_forest,
        plot_groups,
        plot_new_group,
        plot_new_group_pairs,
        plot_ppc,
        plot_trace,
    )
    from bayesmixed.predict import compare
    from bayesmixed.priors import Prior
    from bayesmixed.results import Fit

__all__ = [
    "Fit",
    "Formula",
    "Model",
    "Prior",
    "__version__",
    "clear_compiled",
    "compare",
    "conditional_effects",
    "datasets",
    "errors",
    "load",
    "plot_conditional",
    "plot_correlations",
    "plot_fit",
    "plot_forest",
    "plot_groups",
    "plot_new_group",
    "plot_new_group_pairs",
    "plot_ppc",
    "plot_trace",
]

_LAZY = {
    "Model": "bayesmixed.model",
    "Fit": "bayesmixed.results",
    "Formula": "bayesmixed.formula",
    "load": "bayesmixed.loading",
    "Prior": "bayesmixed.priors",
    "conditional_effects": "bayesmixed.plots",
    "plot_conditional": "bayesmixed.plots",
    "plot_correlations": "bayesmixed.plots",
    "plot_fit": "bayesmixed.plots",
    "plot_forest": "bayesmixed.plots",
    "plot_groups": "bayesmixed.plots",
    "plot_new_group": "bayesmixed.plots",
    "plot_new_group_pairs": "bayesmixed.plots",
    "plot_ppc": "bayesmixed.plots",
    "plot_trace": "bayesmixed.plots",
    "compare": "bayesmixed.predict",
    "clear_compiled": "bayesmixed.engines",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bayesmixed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
