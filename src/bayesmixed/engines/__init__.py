"""The engines that sample a model's posterior, behind one interface and one chooser.

Each engine module (:mod:`~bayesmixed.engines.nuts`, :mod:`~bayesmixed.engines.marginal`,
:mod:`~bayesmixed.engines.gibbs`, :mod:`~bayesmixed.engines.glmm`) has

* ``supports(design, priors) -> str | None``: why it cannot run the model, or None;
* ``fit(design, priors, settings) -> (DataTree, seconds)``: the posterior with the same
  variables, dimensions and coordinates whichever engine ran.

They share :mod:`~bayesmixed.engines.common` (options, seeding, chain placement, the
DataTree builder) and the prior table :mod:`bayesmixed.prior_table`. :func:`choose_engine`
picks the engine for ``Model.fit(sampler=..., marginalize=...)`` and says why;
:func:`run` runs it.

========== ==================================================================
engine     what it does
========== ==================================================================
nuts       NUTS on the full PyMC model (numpyro, blackjax or PyMC's sampler):
           other samplers, links, priors, distributional and category models
glmm       numpyro NUTS on the full model's log density written in JAX from the
           design (gaussian, bernoulli, binomial, poisson, negativebinomial;
           centred or not per factor, Hessian warm start)
marginal   NUTS on the hyper-parameters, group effects integrated out exactly
           (Gaussian, identity link, one grouping factor); then exact draws
gibbs      blocked Gibbs sweeps for large Gaussian models (identity link) and,
           by Polya-Gamma augmentation, large logit bernoulli/binomial ones
laplace    NUTS on the hyper-parameters, group effects integrated out by a
           Laplace approximation (opt-in: ``marginalize="laplace"``); then
           drawn from it, its error measured by importance weights
========== ==================================================================
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import time
from importlib import import_module
from typing import Any

from bayesmixed._imports import import_tqdm_auto
from bayesmixed.engines.common import SAMPLERS, SamplerSettings, memory_maps
from bayesmixed.errors import SamplingError

__all__ = ["AUTO_GIBBS_LEVELS", "AUTO_GIBBS_ROWS", "AUTO_PG_ROWS", "ENGINES", "GIBBS_TUNE",
           "MAPS_RELEASE_FRACTION",
           "choose_engine", "clear_compiled", "engine", "run"]

#: engine name -> module (imported on first use)
ENGINES = {"nuts": "bayesmixed.engines.nuts", "marginal": "bayesmixed.engines.marginal",
           "gibbs": "bayesmixed.engines.gibbs", "glmm": "bayesmixed.engines.glmm",
           "laplace": "bayesmixed.engines.laplace"}

#: compiled programs are released before a fit once the process holds this fraction of the
#: kernel's limit on memory mappings (``vm.max_map_count``; XLA aborts the process there)
MAPS_RELEASE_FRACTION = 0.5

#: a Gaussian model at least this large (rows, or levels over all factors) goes to Gibbs
AUTO_GIBBS_ROWS, AUTO_GIBBS_LEVELS = 10_000, 1_000

#: a logit bernoulli/binomial model with group effects and at least this many rows goes to
#: the Polya-Gamma Gibbs sampler (docs/benchmarks.md: at 100,000 rows full-model NUTS did not
#: finish in 790 CPU-s, Gibbs did in 372; at 1,000 rows NUTS gave 1.2-4x Gibbs's ESS; the
#: crossover between was not measured, so the threshold is conservative)
AUTO_PG_ROWS = 50_000

#: burn-in sweeps of the Gibbs engine when ``fit(tune=...)`` is not given (NUTS: 1000
#: tuning steps). Gibbs has nothing to adapt; burn-in only has to forget the start, and on
#: the 100,000-row bernoulli model every hyper-parameter of all four chains was inside
#: its stationary band within 5 sweeps (docs/benchmarks.md), so 250 is 50 times that
GIBBS_TUNE = 250

#: tuning steps of the NUTS engines when ``fit(tune=...)`` is not given
NUTS_TUNE = 1000


def engine(name: str) -> Any:
    """The module of engine ``name`` (``"nuts"``, ``"marginal"``, ``"gibbs"`` or ``"glmm"``)."""
    return import_module(ENGINES[name])


def choose_engine(design: Any, priors: Any, settings: SamplerSettings, *,
                  sampler: str = "auto", marginalize: bool | str = "auto") -> SamplerSettings:
    """Pick the engine for ``Model.fit(sampler=..., marginalize=...)``.

    Rules: ``sampler="gibbs"`` runs Gibbs (or raises why it cannot). ``sampler="auto"``
    runs Gibbs for Gaussian models with at least :data:`AUTO_GIBBS_ROWS` rows or
    :data:`AUTO_GIBBS_LEVELS` levels that have no exact marginal form (several grouping
    factors), and for logit bernoulli/binomial models with group effects and at least
    :data:`AUTO_PG_ROWS` rows (Polya-Gamma augmentation; below that size full-model NUTS
    is the measured better choice), and numpyro otherwise. With numpyro,
    ``marginalize="auto"`` integrates the group effects out whenever the model has an exact
    marginal form (always faster: fewer parameters, no funnel), ``True`` insists on it,
    ``False`` samples the full model, and
    ``"laplace"`` integrates them out approximately (:mod:`bayesmixed.engines.laplace`;
    any family the glmm engine writes, never chosen automatically).
    The full model (``marginalize=False``, or a model without an exact marginal form such
    as crossed factors or a non-Gaussian family) of a family of
    :data:`bayesmixed.engines.glmm.CHOSEN_FAMILIES` (Gaussian included) runs on the
    ``glmm`` engine when it supports the model's link and priors and the sampler is
    numpyro: its data are arguments of one compiled program per structure, so a loop of
    fits builds no PyMC model. Every other full model runs on ``nuts`` (PyMC's graph
    translated to JAX; ``sampler="blackjax"`` or ``"pymc"`` included), the reason
    recording why ``glmm`` could not. A distributional model (a family parameter with its
    own formula, ``sigma ~ Days``) has no exact marginal form here and runs on ``nuts``:
    only the full PyMC model lets a family parameter vary by row.

    Parameters
    ----------
    design, priors
        The model's design and priors.
    settings : SamplerSettings
        Validated options (its ``sampler`` is replaced by the choice).
    sampler : {"auto", "numpyro", "blackjax", "pymc", "gibbs"}
    marginalize : {"auto", True, False, "laplace"}

    Returns
    -------
    SamplerSettings
        ``settings`` with ``sampler``, ``engine`` and ``engine_reason`` filled in.

    Raises
    ------
    SamplingError
        An unknown ``sampler`` or ``marginalize``, ``sampler="gibbs"`` on a model Gibbs
        cannot run, ``marginalize=True`` on a model without an exact marginal form, or
        ``marginalize="laplace"`` on a model the Laplace route cannot run.
    """
    if not (isinstance(marginalize, bool) or (isinstance(marginalize, str)
                                                and marginalize in ("auto", "laplace"))):
        raise SamplingError(
            f"marginalize={marginalize!r} must be 'auto', True, False or 'laplace'.")
    if sampler != "auto" and sampler not in SAMPLERS:
        raise SamplingError(
            f"Unknown sampler {sampler!r}; choose 'auto' or one of {', '.join(SAMPLERS)}."
        )

    def done(name: str, nuts_sampler: str, reason: str) -> SamplerSettings:
        return dataclasses.replace(settings, sampler=nuts_sampler, engine=name,
                                   engine_reason=reason)

    gibbs, marginal = engine("gibbs"), engine("marginal")
    if marginalize == "laplace":
        why_not = (f"sampler={sampler!r}" if sampler not in ("auto", "numpyro")
                   else engine("laplace").supports(design, priors))
        if why_not:
            raise SamplingError(
                f"marginalize='laplace' is not possible for this model: {why_not}. It needs "
                "sampler='numpyro' (or 'auto'), a family and link of the glmm engine, its "
                "priors and at least one grouping factor; use marginalize='auto'.")
        return done("laplace", "numpyro", "marginalize='laplace': group effects integrated "
                    "out by a Laplace approximation")
    if sampler == "gibbs":
        why_not = gibbs.supports(design, priors)
        if why_not:
            raise SamplingError(why_not + "; use sampler='numpyro'.")
        return done("gibbs", "gibbs", "sampler='gibbs' was asked for")
    no_marginal = None if marginalize is True else (
        "marginalize=False" if marginalize is False else marginal.supports(design, priors))
    if sampler == "auto":
        levels = sum(len(f.levels) for f in design.factors)
        large = design.n >= AUTO_GIBBS_ROWS or levels >= AUTO_GIBBS_LEVELS
        gaussian = design.family_name == "gaussian"
        if (gaussian and large and design.factors and no_marginal
                and gibbs.supports(design, priors) is None):
            return done(
                "gibbs", "gibbs",
                f"sampler='auto': a large Gaussian model ({design.n} rows, {levels} group "
                f"levels) without an exact marginal form ({no_marginal})",
            )
        logit = design.family_name in ("bernoulli", "binomial")
        if (logit and design.n >= AUTO_PG_ROWS and design.factors
                and gibbs.supports(design, priors) is None):
            return done("gibbs", "gibbs", f"sampler='auto': a large logit {design.family_name} "
                        f"model ({design.n} rows): Polya-Gamma blocked Gibbs")
        sampler = "numpyro"
    def full(reason: str) -> SamplerSettings:
        glmm = engine("glmm")
        if getattr(design, "categories", None) is not None:
            return done("nuts", sampler, f"{reason}; {design.family_name} family: PyMC's "
                        "graph on JAX (the glmm engine has no category likelihood)")
        if design.family_name not in glmm.CHOSEN_FAMILIES:
            return done("nuts", sampler, reason)
        why_glmm = (f"sampler={sampler!r}" if sampler != "numpyro"
                    else glmm.supports(design, priors))
        if why_glmm is None:
            return done("glmm", sampler, f"{reason}; {design.family_name} family: the "
                        "full model's JAX log density")
        return done("nuts", sampler, f"{reason}; not on the glmm engine ({why_glmm})")

    if marginalize is False:
        return full("marginalize=False: the full model")
    why_not = f"sampler={sampler!r}" if sampler != "numpyro" else marginal.supports(design,
                                                                                     priors)
    if why_not is None:
        return done("marginal", "numpyro",
                    "Gaussian model with one grouping factor: group effects integrated out "
                    "exactly")
    if marginalize is True:
        raise SamplingError(
            f"marginalize=True is not possible for this model: {why_not}. It needs "
            "sampler='numpyro', family='gaussian' with the identity link, one grouping "
            f"factor and priors among {', '.join(marginal.SUPPORTED_PRIORS)}; use "
            "marginalize='auto' or False to sample the full model."
        )
    return full(f"the full model: no exact marginal form ({why_not})")


def run(design: Any, priors: Any, settings: SamplerSettings) -> tuple[Any, float]:
    """Run the engine ``settings.engine`` (see :func:`choose_engine`)."""
    if settings.engine not in ENGINES:
        raise SamplingError(
            f"Unknown engine {settings.engine!r}; engines: {', '.join(ENGINES)}."
        )
    _release_before_the_limit()
    import_tqdm_auto()  # before numpyro imports it: no ipywidgets warning in notebooks
    idata, seconds = engine(settings.engine).fit(design, priors, settings)
    idata["posterior"].attrs["engine"] = settings.engine
    return idata, seconds


def clear_compiled() -> None:
    """Release every compiled sampler and helper program held by this process.

    Each engine keeps the programs it compiled (one per model structure and shape) so that
    later fits of the same structure skip compilation, and JAX keeps its own in-memory
    caches. Every XLA executable holds memory and memory mappings; a process that fits many
    *different* models (a long notebook, a test suite) can approach the kernel's limit on
    mappings, where XLA aborts the process. :func:`run` calls this by itself when the
    process holds more than :data:`MAPS_RELEASE_FRACTION` of that limit; call it yourself
    to free the memory. Later fits compile again (or load from JAX's persistent cache on
    disk, which is kept).

    Examples
    --------
    >>> import bayesmixed as bm
    >>> bm.clear_compiled()
    """
    for module_name in ENGINES.values():
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, "clear_programs"):
            module.clear_programs()
    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
    gc.collect()


#: seconds between two counts of the memory mappings while the process holds less than half
#: of :data:`MAPS_RELEASE_FRACTION` of the limit (see :func:`_release_before_the_limit`)
MAPS_CHECK_SECONDS = 1.0

#: the last count: ``(time.monotonic(), mappings held, limit)``
_MAPS_SEEN: list[tuple[float, int, int]] = []


def _release_before_the_limit() -> None:
    """:func:`clear_compiled` when the process nears the kernel's memory-mapping limit.

    Counting the mappings reads ``/proc/self/maps`` (about 3 ms with a few thousand, a
    fifth of a small fit), so it is skipped within :data:`MAPS_CHECK_SECONDS` of a count
    that was below half the release threshold: mappings grow only as programs are compiled
    (a few dozen to a few hundred each), far too slowly to cross the other half in a second.
    """
    now = time.monotonic()
    if _MAPS_SEEN:
        then, held, limit = _MAPS_SEEN[0]
        if now - then < MAPS_CHECK_SECONDS and held < 0.5 * MAPS_RELEASE_FRACTION * limit:
            return
    _MAPS_SEEN.clear()
    maps = memory_maps()
    if maps is None:
        return
    if maps[0] > MAPS_RELEASE_FRACTION * maps[1]:
        clear_compiled()
    else:
        _MAPS_SEEN.append((now, *maps))

