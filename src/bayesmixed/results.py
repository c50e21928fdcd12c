"""The fit: posterior draws (an ArviZ DataTree) together with the model that made them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from bayesmixed import summary as _summary

if TYPE_CHECKING:
    from bayesmixed.engines.common import SamplerSettings
    from bayesmixed.model import Model
    from bayesmixed.predict import Prediction

__all__ = ["Fit"]


class Fit:
    """Posterior of a :class:`~bayesmixed.Model`, returned by ``Model.fit()``.

    Attributes
    ----------
    model : Model
        The model that was fitted.
    idata : xarray.DataTree
        ArviZ DataTree with ``posterior`` (common effects by term, ``sd_<g>``,
        ``cor_<g>``, ``r_<g>`` with level coordinates, family parameters),
        ``sample_stats`` and ``observed_data``.
    settings : SamplerSettings
        The sampler options used.
    sampling_time : float
        Seconds spent in the sampler (compilation included).

    Examples
    --------
    >>> fit = bm.Model("Reaction ~ Days + (Days | Subject)", df).fit()  # doctest: +SKIP
    >>> fit.summary()                                                     # doctest: +SKIP
    >>> fit.idata["posterior"]["r_Subject"].sel(Subject="308")            # doctest: +SKIP
    """

    def __init__(
        self,
        model: Model,
        idata: Any,
        *,
        settings: SamplerSettings,
        sampling_time: float = float("nan"),
    ) -> None:
        self.model = model
        self.idata = idata
        self.settings = settings
        self.sampling_time = sampling_time

    @property
    def design(self):
        """The model's design (response, matrices, factors)."""
        return self.model.design

    @property
    def posterior(self):
        """The posterior group as an :class:`xarray.Dataset`."""
        return self.idata["posterior"].to_dataset()

    def summary(self, quantiles: Sequence[float] = (0.025, 0.975)) -> pd.DataFrame:
        """Hyper-parameters, one row each, labelled as brms does.

        Rows: fixed effects (``Intercept``, ``Days``), group SDs (``sd(Days|Subject)``),
        correlations (``cor(Intercept,Days|Subject)``), family parameters (``sigma``).
        Columns: ``mean``, ``sd``, quantiles (``q2.5``, ``q97.5``), ``r_hat``,
        ``ess_bulk``, ``ess_tail``. Group effects are in :meth:`ranef`.

        Examples
        --------
        >>> fit.summary().loc["sd(Days|Subject)", ["mean", "q2.5", "q97.5"]]  # doctest: +SKIP
        """
        return _summary.summary_table(self.posterior, self.design, quantiles)

    def fixef(self, quantiles: Sequence[float] = (0.025, 0.975)) -> pd.DataFrame:
        """Common (fixed) effects: mean, sd and quantiles per design column.

        Examples
        --------
        >>> fit.fixef().loc["Days", "mean"]                                # doctest: +SKIP
        """
        return _summary.fixef_table(self.posterior, self.design, quantiles)

    def ranef(self, quantiles: Sequence[float] = (0.025, 0.975)) -> dict[str, pd.DataFrame]:
        """Group effects (deviations), ``{factor: DataFrame}`` with ``(term, stat)`` columns.

        Examples
        --------
        >>> fit.ranef()["Subject"][("Days", "mean")]                       # doctest: +SKIP
        """
        return _summary.ranef_table(self.posterior, self.design, quantiles)

    def coef(self, quantiles: Sequence[float] = (0.025, 0.975)) -> dict[str, pd.DataFrame]:
        """Per-level coefficients, fixed + group effect, as lme4's ``coef()``.

        Examples
        --------
        >>> fit.coef()["Subject"].loc["308"]                               # doctest: +SKIP
        """
        return _summary.coef_table(self.posterior, self.design, quantiles)

    def VarCorr(self) -> dict[str, dict[str, pd.DataFrame]]:
        """Group SDs and correlation matrices per factor (and the residual SD).

        Examples
        --------
        >>> vc = fit.VarCorr()                                             # doctest: +SKIP
        >>> vc["Subject"]["cor"]                                           # doctest: +SKIP
        """
        return _summary.varcorr_table(self.posterior, self.design)

    # -- predictions (see bayesmixed.predict) ------------------------------------------------

    def predict(
        self,
        data: pd.DataFrame | None = None,
        *,
        kind: str = "mean",
        include_groups: bool = True,
        new_groups: str = "error",
        random_seed: int | None = None,
        dpar: str | None = None,
    ) -> Prediction:
        """Posterior predictions for the observed rows (``data=None``) or new data.

        Parameters
        ----------
        data : pandas.DataFrame, optional
            New rows; ``None`` predicts the rows the model was fitted on.
        kind : {"mean", "response", "linear"}
            The family's mean (brms's ``posterior_epred``), new responses drawn from the
            likelihood (``posterior_predict``) or the linear predictor (``posterior_linpred``).
        include_groups : bool, default True
            ``False`` gives population-level predictions (brms's ``re_formula = NA``).
        new_groups : {"error", "gaussian", "uncertainty", "old_levels"}
            Unseen group levels: refuse them, or draw their effects as brms's
            ``sample_new_levels`` does.
        random_seed : int, optional
            The same seed gives the same draws.
        dpar : str, optional
            Predict this family parameter instead of the mean, as brms's ``dpar``:
            ``fit.predict(dpar="sigma")`` gives sigma's draws per row (``kind="mean"``) or
            its linear predictor, ``log(sigma)`` (``kind="linear"``); see
            ``docs/distributional.md``.

        Returns
        -------
        Prediction
            ``.draws`` (dims ``chain, draw, row``) and ``.summary()``. See
            :func:`bayesmixed.predict.predict` for details.

        Examples
        --------
        >>> import pandas as pd
        >>> new = pd.DataFrame({"Days": range(10), "Subject": "new"})
        >>> pred = fit.predict(new, kind="response", new_groups="gaussian",
        ...                    random_seed=1)                             # doctest: +SKIP
        >>> pred.summary()                                                # doctest: +SKIP
        """
        from bayesmixed.predict import predict

        return predict(
            self,
            data,
            kind=kind,
            include_groups=include_groups,
            new_groups=new_groups,
            random_seed=random_seed,
            dpar=dpar,
        )

    def new_group_effects(
        self,
        group: str,
        n: int = 1,
        *,
        new_groups: str = "gaussian",
        include_fixed: bool = True,
        random_seed: int | None = None,
    ) -> Any:
        """Coefficient draws of ``n`` new levels of a grouping factor.

        Parameters
        ----------
        group : str
            The factor label (``"Subject"``).
        n : int, default 1
            Number of new levels, each with independent draws.
        new_groups : {"gaussian", "uncertainty", "old_levels"}
            How the effects are drawn (see :meth:`predict`).
        include_fixed : bool, default True
            Fixed effect + group deviation (as ``coef()``); ``False``: deviations only.
        random_seed : int, optional
            The same seed gives the same draws.

        Returns
        -------
        xarray.DataArray
            Dims ``(chain, draw, level, term)``, levels ``new_1``, ``new_2``, ...

        Examples
        --------
        >>> eff = fit.new_group_effects("Subject", random_seed=1)         # doctest: +SKIP
        >>> eff.sel(level="new_1", term="Days").mean().item()             # doctest: +SKIP
        """
        from bayesmixed.predict import new_group_effects

        return new_group_effects(
            self,
            group,
            n,
            new_groups=new_groups,
            include_fixed=include_fixed,
            random_seed=random_seed,
        )

    def pymc_posterior(self) -> Any:
        """The posterior with every free variable of :meth:`Model.build`'s PyMC model.

        Adds the LKJ Cholesky factors ``L_<g>`` and the offsets ``z_<g>``, reconstructed
        from ``r_<g>``, ``sd_<g>`` and ``cor_<g>``, so that
        :func:`pymc.sample_posterior_predictive` on an extended model draws only what you
        added (``docs/model.md``).

        Returns
        -------
        xarray.Dataset
            :attr:`posterior` plus ``L_<g>`` and ``z_<g>``.

        Examples
        --------
        >>> import pymc as pm                                             # doctest: +SKIP
        >>> pm_model = fit.model.build()                                  # doctest: +SKIP
        >>> with pm_model:                                                # doctest: +SKIP
        ...     z_new = pm.Normal("z_new", 0, 1, shape=2)
        ...     pm.Deterministic("r_new", (pm_model["L_Subject"] @ z_new) * pm_model["sd_Subject"])
        >>> pm.sample_posterior_predictive(fit.pymc_posterior(), model=pm_model,
        ...                                var_names=["r_new"])           # doctest: +SKIP
        """
        from bayesmixed.pymc_posterior import pymc_posterior

        return pymc_posterior(self)

    def posterior_predictive(self, *, random_seed: int | None = None) -> Any:
        """A copy of :attr:`idata` with a ``posterior_predictive`` group (for PPC plots).

        Returns
        -------
        xarray.DataTree
            The fit's DataTree is not changed.

        Examples
        --------
        >>> import arviz_plots as azp                                     # doctest: +SKIP
        >>> azp.plot_ppc_dist(fit.posterior_predictive(random_seed=1))     # doctest: +SKIP
        """
        from bayesmixed.predict import posterior_predictive

        return posterior_predictive(self, random_seed=random_seed)

    def log_likelihood(self) -> Any:
        """A copy of :attr:`idata` with the pointwise ``log_likelihood`` group.

        Returns
        -------
        xarray.DataTree
            Usable with ``arviz.loo`` and ``arviz.compare``; the fit is not changed.

        Examples
        --------
        >>> fit.log_likelihood()["log_likelihood"]                        # doctest: +SKIP
        """
        from bayesmixed.predict import log_likelihood

        return log_likelihood(self)

    def loo(self, **kwargs: Any) -> Any:
        """PSIS leave-one-out cross-validation (``arviz.loo``); compare fits with
        :func:`bayesmixed.compare`.

        Examples
        --------
        >>> fit.loo()                                                     # doctest: +SKIP
        """
        from bayesmixed.predict import loo

        return loo(self, **kwargs)

    def r2(self, quantiles: Sequence[float] = (0.025, 0.975)) -> pd.DataFrame:
        """Bayesian R² (Gelman et al. 2019), as brms's ``bayes_R2``.

        Per draw, the variance of the expected values over rows divided by that plus the
        variance of the residuals ``y - expected``; see :mod:`bayesmixed.r2`.

        Returns
        -------
        pandas.DataFrame
            Rows ``conditional`` (group effects included) and ``marginal`` (common effects
            only, brms's ``re_formula = NA``); columns ``mean``, ``sd``, ``q2.5``, ``q97.5``.

        Examples
        --------
        >>> fit.r2()                                                      # doctest: +SKIP
        """
        from bayesmixed.r2 import bayes_r2

        return bayes_r2(self, quantiles)

    # -- refits (see bayesmixed.refit) ---------------------------------------------------------

    def update(
        self, data: pd.DataFrame | None = None, *, random_seed: int | None = None, **options: Any
    ) -> Fit:
        """Refit the same model on new data (brms's ``update(newdata = ...)``).

        Same formula, family, link, prior overrides and sampler settings; ``options``
        change sampler settings (``draws``, ``chains``, ...). Default priors are
        recomputed from the new data, as a new :class:`~bayesmixed.Model` would. A refit
        of the same structure reuses the compiled sampler. See :func:`bayesmixed.refit.update`.

        Examples
        --------
        >>> boot = df.sample(len(df), replace=True, random_state=2)
        >>> refit = fit.update(data=boot, random_seed=2)              # doctest: +SKIP
        """
        from bayesmixed.refit import update

        return update(self, data, random_seed=random_seed, **options)

    def kfold(
        self,
        k: int = 10,
        *,
        group: str | None = None,
        random_seed: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """K-fold cross-validation (brms's ``kfold``): ``elpd_kfold``, its SE, the fits.

        ``group`` holds out whole levels of a column; other keywords (``folds``,
        ``new_groups``, ``save_fits``, sampler settings) as in
        :func:`bayesmixed.refit.kfold`.

        Examples
        --------
        >>> cv = fit.kfold(k=10, random_seed=1)                       # doctest: +SKIP
        >>> cv.summary()                                              # doctest: +SKIP
        """
        from bayesmixed.refit import kfold

        return kfold(self, k, group=group, random_seed=random_seed, **kwargs)

    # -- reliability (see bayesmixed.diagnostics and bayesmixed.io) ----------------------------

    def diagnostics(self, *, rhat_max: float = 1.01, ess_min: float = 400) -> Any:
        """Convergence diagnostics: divergences, R-hat, ESS and singular SDs.

        Parameters
        ----------
        rhat_max : float, default 1.01
            R-hat above this flags a parameter.
        ess_min : float, default 400
            Bulk or tail effective sample size below this flags a parameter.

        Returns
        -------
        bayesmixed.diagnostics.Diagnostics
            ``.table`` (``r_hat``, ``ess_bulk``, ``ess_tail``, ``problem`` per
            hyper-parameter, labelled as in :meth:`summary`), ``.divergences``,
            ``.singular``, ``.converged``.

        Examples
        --------
        >>> diag = fit.diagnostics()                                      # doctest: +SKIP
        >>> diag.divergences, diag.table.loc["sd(Days|Subject)", "r_hat"]  # doctest: +SKIP
        """
        from bayesmixed.diagnostics import diagnose

        return diagnose(self, rhat_max=rhat_max, ess_min=ess_min)

    def save(self, path: Any) -> Any:
        """Save the fit to one file; :func:`bayesmixed.load` reads it back.

        The file (netCDF-4, extension ``.bmfit``) holds the DataTree, the formula, family,
        link, priors, the data with their dtypes and the sampler settings, so a loaded fit
        summarises and predicts exactly as this one; the draws open with xarray or ArviZ
        alone (``xarray.open_datatree(path)``). Failures raise
        :class:`~bayesmixed.errors.FitError` naming the path and the cause.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced if it exists).

        Returns
        -------
        pathlib.Path

        Examples
        --------
        >>> fit.save("sleep.bmfit")                                       # doctest: +SKIP
        >>> same = bm.load("sleep.bmfit")                                 # doctest: +SKIP
        """
        from bayesmixed.io import save

        return save(self, path)

    def __repr__(self) -> str:
        design = self.design
        s = self.settings
        links = "".join(f"; {p.name} = {p.link_name}" for p in design.parameters)
        header = (
            f" Family: {design.family_name}\n  Links: {design.common.parent} = "
            f"{design.common.link_name}{links}\nFormula: {self.model.formula}\n   Data: "
            f"{design.n} observations\n  Draws: {s.chains} chains, each with "
            f"{s.tune} tuning and {s.draws} kept draws ({_engine_words(s)})"
        )
        return _summary.format_summary(self.summary(), design, header)


def _engine_words(settings: SamplerSettings) -> str:
    """What ran the fit, for the header: "gibbs", "numpyro NUTS, group effects marginalised"."""
    engine = getattr(settings, "engine", None)
    if engine == "gibbs" or settings.sampler == "gibbs":
        return "gibbs"
    if engine == "marginal":
        return f"{settings.sampler} NUTS, group effects marginalised"
    if engine == "laplace":
        return f"{settings.sampler} NUTS, group effects Laplace-approximated"
    return f"{settings.sampler} NUTS"
