"""The user-facing :class:`Model`: formula + data + options -> fit.

The constructor is cheap: it parses the formula and checks the data's type and shape.
The design (Bambi/formulae), priors and PyMC model are built on first use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import pandas as pd

from bayesmixed.errors import DataError
from bayesmixed.formula import Formula, FormulaSpec, parse_formula
from bayesmixed.priors import PriorSet

__all__ = ["Model"]


class Model:
    """A Bayesian mixed-effects model written as an lme4 formula.

    Parameters
    ----------
    formula : str or Formula
        lme4 syntax: ``"Reaction ~ Days + (Days | Subject)"``. Group terms: ``(x | g)``
        correlated (LKJ prior), ``(x || g)`` independent, ``(1 | a/b)`` nested,
        ``(1 | a:b)``, crossed ``(1 | a) + (1 | b)``; responses ``cbind(successes,
        failures)`` (binomial) or anything formulae reads (``np.log(y)``, ``p(k, n)``).
        A :class:`~bayesmixed.Formula` gives family parameters their own formulas
        (distributional regression, brms's ``bf(y ~ ..., sigma ~ ...)``):
        ``bm.Formula("Reaction ~ Days + (Days | Subject)", "sigma ~ Days")``; see
        ``docs/distributional.md``.
    data : pandas.DataFrame
        One row per observation. Never modified.
    family : str, optional
        A Bambi family name (``"gaussian"``, ``"bernoulli"``, ``"binomial"``, ``"poisson"``,
        ``"negativebinomial"``, ``"t"``, ``"gamma"``, ...; ordinal ``"cumulative"`` and
        ``"sratio"`` and ``"categorical"`` for a response of categories, see
        ``docs/ordinal.md``; multinomial families are refused, see ``docs/families.md``).
        Default ``"gaussian"``, or ``"binomial"`` for a ``cbind`` response.
    link : str or dict, optional
        Link of the family's mean parameter; Bambi's default for the family if omitted.
    priors : dict, optional
        Overrides keyed like the summary rows: ``{"Days": Prior("Normal", mu=0, sigma=10),
        "sd(Days|Subject)": Prior("HalfNormal", sigma=20), "sd(Subject)": ...,
        "cor(Subject)": 2, "sigma": Prior("HalfStudentT", nu=4, sigma=30)}``; terms of a
        parameter formula as ``"sigma_Days"``, ``"sd(sigma_Intercept|Subject)"``,
        ``"cor(sigma|Subject)"``.
    dropna : bool, default True
        Drop rows with missing values in the used columns (with a warning), as lme4 does;
        if False, missing values raise :class:`~bayesmixed.errors.DataError`.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> model = bm.Model("Reaction ~ Days + (Days | Subject)", bm.datasets.sleepstudy())
    >>> fit = model.fit(draws=500, tune=500, random_seed=1)        # doctest: +SKIP
    >>> fit.summary()                                              # doctest: +SKIP
    """

    def __init__(
        self,
        formula: str | Formula,
        data: pd.DataFrame,
        *,
        family: str | None = None,
        link: str | dict[str, str] | None = None,
        priors: Mapping[str, Any] | None = None,
        dropna: bool = True,
    ) -> None:
        self.spec: FormulaSpec = parse_formula(formula)
        self._formula = formula
        self.data = _check_data(data)
        if family is not None and not isinstance(family, str):
            from bayesmixed.errors import FamilyError

            raise FamilyError(
                f"family must be a family name such as 'gaussian' or 'binomial', got "
                f"{type(family).__name__}."
            )
        self.family = family
        self.link = link
        if priors is not None and not isinstance(priors, Mapping):
            from bayesmixed.errors import PriorError

            raise PriorError(
                "priors must be a dict such as {'Days': Prior('Normal', mu=0, sigma=10)}, "
                f"got {type(priors).__name__}."
            )
        self.prior_overrides: dict[str, Any] = dict(priors or {})
        self.dropna = bool(dropna)

    @property
    def formula(self) -> str | Formula:
        """The formula as written (a :class:`~bayesmixed.Formula` for a distributional model)."""
        return self._formula

    @cached_property
    def design(self):
        """The :class:`~bayesmixed.design.Design` (built on first use)."""
        from bayesmixed.design import build_design

        return build_design(
            self.spec, self.data, family=self.family, link=self.link, dropna=self.dropna
        )

    @cached_property
    def priors(self) -> PriorSet:
        """Every prior of the model: defaults with the overrides applied."""
        from bayesmixed.priors import default_priors
        from bayesmixed.validate import check_priors

        return check_priors(default_priors(self.design).apply(self.prior_overrides), self.design)

    def build(self):
        """Build and return the PyMC model (a new ``pm.Model`` each call).

        Variables: common terms by name (``Intercept``, ``Days``), ``sd_<g>``, ``cor_<g>``,
        ``L_<g>`` (LKJ Cholesky factor), ``z_<g>`` (offsets), ``r_<g>`` (group effects,
        dims ``(<g>, <g>__term)``), family parameters (``sigma``) and the response.

        Examples
        --------
        >>> pm_model = model.build()                                      # doctest: +SKIP
        >>> pm_model["r_Subject"].eval().shape                            # doctest: +SKIP
        (18, 2)
        """
        from bayesmixed.build import build_pymc_model

        return build_pymc_model(self.design, self.priors)

    def fit(
        self,
        *,
        draws: int = 1000,
        tune: int | None = None,
        chains: int = 4,
        sampler: str = "auto",
        target_accept: float = 0.8,
        random_seed: int | None = None,
        progressbar: bool | None = None,
        chain_method: str | None = None,
        marginalize: bool | str = "auto",
    ):
        """Sample the posterior with NUTS.

        Parameters
        ----------
        draws, tune, chains : int
            Draws kept per chain, tuning steps per chain, number of chains (Python or
            NumPy integers). ``tune`` defaults to 1000 NUTS tuning steps, and to
            :data:`bayesmixed.engines.GIBBS_TUNE` (250) burn-in sweeps when the Gibbs
            engine runs (it adapts nothing; its chains forget their start within a few
            sweeps, ``docs/benchmarks.md``); a ``tune`` given is used as given.
            ``fit.settings.tune`` records the number used.
        sampler : {"auto", "numpyro", "blackjax", "pymc", "gibbs"}
            ``"numpyro"``: NUTS on JAX. ``"gibbs"``: an exact blocked Gibbs sampler for
            Gaussian models (identity link) and, by Polya-Gamma augmentation, bernoulli
            and binomial models with the logit link, that scales to hundreds of thousands
            of rows and thousands of levels (see ``docs/scale.md``). ``"auto"`` (default)
            picks numpyro, except for Gaussian models with at least 10,000 rows or 1,000
            group levels that cannot be marginalised (several grouping factors) and logit
            bernoulli/binomial models with group effects and at least 50,000 rows, where
            it picks gibbs. ``fit.settings.sampler`` records the choice, ``fit.settings.engine``
            the engine that ran (``"nuts"``, ``"glmm"``, ``"marginal"`` or ``"gibbs"``) and
            ``fit.settings.engine_reason`` why (see :mod:`bayesmixed.engines`).
        target_accept : float
            Target acceptance rate; raise it (0.95) if there are divergences.
        random_seed : int, optional
            The same seed gives the same draws (Python or NumPy integer).
        progressbar : bool, optional
            Default: shown unless the environment variable ``CI`` is set.
        chain_method : {"parallel", "vectorized", "sequential"}, optional
            How JAX runs the chains; parallel when JAX has a device per chain, else one
            after the other (with a warning naming the fix if "parallel" was asked for).
        marginalize : {"auto", True, False, "laplace"}
            Integrate Gaussian group effects out exactly and sample only the
            hyper-parameters, then draw ``r_<g>`` from its exact conditional (same
            posterior, same variables, several times faster; see ``docs/benchmarks.md``).
            ``"auto"`` does so for gaussian/identity models with one grouping factor and
            sampler ``"numpyro"``, and samples the full model otherwise. With sampler
            ``"numpyro"`` the full model of a bernoulli, binomial, poisson or
            negativebinomial model with its usual link runs on the JAX engine
            :mod:`bayesmixed.engines.glmm` (centred or non-centred per factor, chosen from
            the data); other families, links or priors use PyMC's graph translated to JAX.
            ``"laplace"`` (opt-in) integrates the group effects of such a model out by a
            Laplace approximation and samples only the hyper-parameters; the
            approximation's error is in ``fit.diagnostics().laplace_khat`` (see
            :mod:`bayesmixed.engines.laplace`).

        Returns
        -------
        Fit

        Examples
        --------
        >>> model = bm.Model("Reaction ~ Days + (Days | Subject)", bm.datasets.sleepstudy())
        >>> fit = model.fit(draws=1000, tune=1000, chains=4, random_seed=1)  # doctest: +SKIP
        >>> fit.settings.sampler                                          # doctest: +SKIP
        'numpyro'
        """
        from bayesmixed.diagnostics import check_fit
        from bayesmixed.engines import GIBBS_TUNE, NUTS_TUNE, choose_engine, run
        from bayesmixed.engines.common import SamplerSettings
        from bayesmixed.results import Fit

        settings = SamplerSettings(
            draws=draws,
            tune=NUTS_TUNE if tune is None else tune,
            chains=chains,
            sampler="numpyro" if sampler == "auto" else sampler,
            target_accept=target_accept,
            random_seed=random_seed,
            progressbar=progressbar,
            chain_method=chain_method,
        )
        design = self.design
        settings = choose_engine(design, self.priors, settings, sampler=sampler,
                                 marginalize=marginalize)
        if tune is None and settings.engine == "gibbs":
            settings = dataclasses.replace(settings, tune=GIBBS_TUNE)
        idata, seconds = run(design, self.priors, settings)
        fit = Fit(self, idata, settings=settings, sampling_time=seconds)
        check_fit(fit)  # one ConvergenceWarning / SingularFitWarning naming the parameters
        return fit

    def sample_prior(
        self, *, draws: int = 500, chains: int = 1, random_seed: int | None = None
    ):
        """Draw from the priors alone, for prior predictive checks (brms's
        ``sample_prior = "only"``); no sampler runs and the response is not used.

        Parameters
        ----------
        draws : int, default 500
            Draws per chain.
        chains : int, default 1
            Independent draws split into this many chains.
        random_seed : int, optional
            The same seed gives the same draws.

        Returns
        -------
        bayesmixed.prior_predictive.PriorFit
            A fit whose posterior holds the prior draws: ``summary()``, ``predict()``
            and the plots work on it as on a fit.

        Examples
        --------
        >>> prior = model.sample_prior(draws=500, random_seed=1)      # doctest: +SKIP
        >>> bm.plot_ppc(prior)                                        # doctest: +SKIP
        """
        from bayesmixed.prior_predictive import sample_prior

        return sample_prior(self, draws=draws, chains=chains, random_seed=random_seed)

    def __repr__(self) -> str:
        lines = [
            f"Formula: {self.formula}",
            f"Family: {self.design.family_name} (link: {self.design.common.link_name})",
            f"Observations: {self.design.n}",
        ]
        for fac in self.design.factors:
            lines.append(
                f"Group factor {fac.label}: {len(fac.levels)} levels, terms "
                f"{', '.join(fac.terms)}"
            )
        for par in self.design.parameters:
            lines.append(f"Parameter {par.name} (link: {par.link_name}): {par.formula}")
            lines.extend(
                f"  group factor {fac.label}: {len(fac.levels)} levels, terms "
                f"{', '.join(fac.terms)}" for fac in par.factors
            )
        lines.append("Priors:")
        lines.extend("  " + line for line in self.priors.describe().splitlines())
        return "\n".join(lines)


def _check_data(data: Any) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise DataError(
            f"data must be a pandas DataFrame, got {type(data).__name__}; convert it with "
            "pandas.DataFrame(...) first."
        )
    if data.columns.duplicated().any():
        dup = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
        raise DataError(f"The data have duplicate column names: {', '.join(dup)}; rename them.")
    if len(data) == 0:
        raise DataError("The data are empty (0 rows).")
    return data.copy(deep=True)


