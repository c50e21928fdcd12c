"""Prior predictive checks: draws from the priors alone (brms's ``sample_prior = "only"``).

:func:`sample_prior` draws every parameter from its prior and a response for every data row
from the likelihood, by forward sampling of the model's PyMC graph
(:func:`pymc.sample_prior_predictive`); no sampler runs and the observed response is never
read. The result is a :class:`PriorFit`: a :class:`~bayesmixed.Fit` whose ``posterior``
group holds the prior draws, laid out as a posterior is, so ``summary()``, ``predict()``,
``r2()`` and the plots work on it as on a fitted model and show what the priors imply
before any data are seen. Its ``prior_predictive`` group holds the simulated responses.

Examples
--------
>>> import bayesmixed as bm
>>> model = bm.Model("Reaction ~ Days + (Days | Subject)", bm.datasets.sleepstudy())
>>> prior = model.sample_prior(draws=500, random_seed=1)              # doctest: +SKIP
>>> prior.summary()                                                    # doctest: +SKIP
>>> bm.plot_ppc(prior)                                                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmixed.errors import FitError, SamplingError
from bayesmixed.results import Fit

if TYPE_CHECKING:
    from bayesmixed.model import Model

__all__ = ["PriorFit", "PriorSettings", "sample_prior"]


@dataclass(frozen=True)
class PriorSettings:
    """How prior draws were made (in place of a fit's sampler settings).

    Attributes
    ----------
    draws, chains : int
        Draws per chain and number of chains (independent draws split into chains).
    random_seed : int or None
        The seed; the same seed gives the same draws.
    sampler : str
        Always ``"prior"``: forward sampling of the priors, no MCMC.
    tune : int
        Always 0.
    """

    draws: int = 500
    chains: int = 1
    random_seed: int | None = None
    sampler: str = "prior"
    tune: int = 0

    def __post_init__(self) -> None:
        for name in ("draws", "chains"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise SamplingError(f"{name}={value!r} must be a positive integer.")
        seed = self.random_seed
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
        ):
            raise SamplingError(f"random_seed={seed!r} must be a non-negative integer or None.")


class PriorFit(Fit):
    """Draws from the priors of a :class:`~bayesmixed.Model`, usable like a fit.

    Returned by :meth:`bayesmixed.Model.sample_prior`. The ``posterior`` group of
    :attr:`idata` holds the *prior* draws (its ``draws_from`` attribute says
    ``"prior"``); ``prior_predictive`` holds responses simulated from them.
    :attr:`is_prior` is ``True`` and ``settings.sampler`` is ``"prior"``.

    Examples
    --------
    >>> prior = model.sample_prior(draws=500, random_seed=1)           # doctest: +SKIP
    >>> prior.predict(kind="response", random_seed=1).summary()        # doctest: +SKIP
    """

    is_prior = True

    def save(self, path: Any) -> Any:
        """Refused: prior draws are cheap to remake with the same ``random_seed``."""
        raise FitError(
            "Prior draws are not saved as a fit; call model.sample_prior(...) again with the "
            "same random_seed to get the same draws, or save prior.idata with "
            "prior.idata.to_netcdf(path)."
        )

    def __repr__(self) -> str:
        from bayesmixed import summary as _summary

        design = self.design
        s = self.settings
        header = (
            f"PRIOR DRAWS (no data used; brms's sample_prior = 'only')\n Family: "
            f"{design.family_name}\n  Links: {design.common.parent} = "
            f"{design.common.link_name}\nFormula: {self.model.formula}\n   Data: "
            f"{design.n} rows (predictors only)\n  Draws: {s.chains} chain(s) x {s.draws} "
            "draws from the priors"
        )
        return _summary.format_summary(self.summary(), design, header)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence a logger's INFO lines (PyMC's "Sampling: [...]") for the duration."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def sample_prior(
    model: Model,
    *,
    draws: int = 500,
    chains: int = 1,
    random_seed: int | None = None,
) -> PriorFit:
    """Draw the parameters from their priors and responses from the likelihood.

    Parameters
    ----------
    model : Model
        The model (formula, data, family, priors). Its predictors and trials are used;
        its observed response is not.
    draws : int, default 500
        Draws per chain.
    chains : int, default 1
        Independent draws are split into this many chains (R-hat is then about 1).
    random_seed : int, optional
        The same seed gives the same draws.

    Returns
    -------
    PriorFit
        ``posterior`` holds the prior draws (variables as in a posterior),
        ``prior_predictive`` the simulated responses (dims ``chain, draw, __obs__``).

    Raises
    ------
    SamplingError
        For a non-positive ``draws`` or ``chains`` or an invalid seed.

    Examples
    --------
    >>> prior = sample_prior(model, draws=500, random_seed=1)          # doctest: +SKIP
    >>> prior.summary()                                                # doctest: +SKIP
    """
    import pymc as pm
    import pytensor
    import xarray as xr

    from bayesmixed.build import hyper_var_names

    settings = PriorSettings(draws=draws, chains=chains, random_seed=random_seed)
    start = time.perf_counter()
    design = model.design
    pm_model = model.build()
    keep = hyper_var_names(design)
    response = design.response_name
    total = settings.draws * settings.chains
    # forward sampling of a small graph: PyTensor's Python implementations start at once,
    # where its C backend would first compile for minutes
    with pytensor.config.change_flags(cxx=""), _quiet("pymc.sampling.forward"):
        tree = pm.sample_prior_predictive(
            draws=total,
            model=pm_model,
            var_names=[*keep, response],
            random_seed=settings.random_seed,
        )
    prior = tree["prior"].to_dataset()
    predictive = tree["prior_predictive"].to_dataset()

    def split(ds: xr.Dataset) -> xr.Dataset:
        """(1, chains * draws, ...) -> (chains, draws, ...)."""
        out = {}
        for name, var in ds.data_vars.items():
            values = var.values.reshape(settings.chains, settings.draws, *var.shape[2:])
            out[name] = (var.dims, values)
        coords = {k: v for k, v in ds.coords.items() if k not in ("chain", "draw")}
        coords["chain"] = np.arange(settings.chains)
        coords["draw"] = np.arange(settings.draws)
        return xr.Dataset(out, coords=coords)

    posterior = split(prior[[name for name in keep if name in prior]])
    cats = design.categories
    if cats is not None and cats.family == "cumulative":  # as the likelihood used them
        var = design.layout.family["threshold"]
        posterior[var] = posterior[var].copy(data=np.sort(posterior[var].values, axis=-1))
    posterior.attrs.update(
        {
            "draws_from": "prior",
            "inference_library": "pymc.sample_prior_predictive",
            "sample_dims": ["chain", "draw"],
        }
    )
    idata = xr.DataTree.from_dict(
        {
            "posterior": posterior,
            "prior_predictive": split(predictive),
            "observed_data": tree["observed_data"].to_dataset(),
        }
    )
    seconds = time.perf_counter() - start
    return PriorFit(model, idata, settings=settings, sampling_time=seconds)  # type: ignore[arg-type]
