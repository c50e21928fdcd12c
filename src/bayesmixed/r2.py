"""Bayesian R² (Gelman, Goodrich, Gabry and Vehtari 2019), computed as brms's ``bayes_R2``.

For every posterior draw ``s``, with ``ypred_s`` the expected values of the observed rows
(brms's ``posterior_epred``) and ``e_s = y - ypred_s`` the residuals,

    R²_s = var(ypred_s) / (var(ypred_s) + var(e_s)),

variances taken over rows. ``conditional`` includes every group effect; ``marginal``
leaves them out (brms's ``re_formula = NA``), so it measures what the common effects alone
explain. The result summarises the draws of ``R²_s``.

Reference: A. Gelman, B. Goodrich, J. Gabry and A. Vehtari (2019). R-squared for Bayesian
regression models. *The American Statistician* 73(3), 307-309.

Examples
--------
>>> import bayesmixed as bm
>>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
...                bm.datasets.sleepstudy()).fit(random_seed=1)        # doctest: +SKIP
>>> fit.r2()                                                           # doctest: +SKIP
                 mean     sd   q2.5  q97.5
conditional     0.792  0.017  0.755  0.820
marginal        0.283  0.063  0.152  0.400
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from bayesmixed.errors import FitError

if TYPE_CHECKING:
    from bayesmixed.results import Fit

__all__ = ["bayes_r2", "r2_draws"]

# families with a count-of-trials response: brms's epred is probability x trials
_TRIALS_FAMILIES = ("binomial", "beta_binomial", "zero_inflated_binomial")
# families whose expected value is not a number per row: R² is not defined
_UNSUPPORTED = ("categorical", "multinomial", "dirichlet_multinomial", "cumulative", "sratio")


def r2_draws(fit: Fit, *, include_groups: bool = True) -> np.ndarray:
    """Draws of the Bayesian R², one per posterior draw.

    Parameters
    ----------
    fit : Fit
        A fitted model (or prior draws from :meth:`bayesmixed.Model.sample_prior`).
    include_groups : bool, default True
        ``True``: conditional R² (group effects in the expected values); ``False``:
        marginal R² (common effects only, brms's ``re_formula = NA``).

    Returns
    -------
    numpy.ndarray
        Shape ``(chain * draw,)``.

    Raises
    ------
    FitError
        For a family whose expected value is not one number per row (categorical,
        ordinal), where the R² is not defined.

    Examples
    --------
    >>> draws = r2_draws(fit, include_groups=False)                    # doctest: +SKIP
    >>> draws.mean()                                                   # doctest: +SKIP
    """
    design = fit.design
    family = design.family_name
    if family in _UNSUPPORTED:
        raise FitError(
            f"The Bayesian R² is not defined for the {family!r} family (its expected value "
            "is a set of category probabilities, not one number per row)."
        )
    epred = np.asarray(
        fit.predict(kind="mean", include_groups=bool(include_groups)).draws.values, dtype=float
    )
    epred = epred.reshape(-1, epred.shape[-1])
    response = np.asarray(design.common.response, dtype=float)
    if family in _TRIALS_FAMILIES and response.ndim == 2:
        # Bambi's binomial response holds (successes, trials); brms's epred is p * trials
        y = response[:, 0]
        epred = epred * response[:, 1]
    else:
        y = response.reshape(len(response), -1)[:, 0]
    var_pred = epred.var(axis=1, ddof=1)
    var_res = (y[None, :] - epred).var(axis=1, ddof=1)
    total = var_pred + var_res
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, var_pred / total, np.nan)


def bayes_r2(fit: Fit, quantiles: Sequence[float] = (0.025, 0.975)) -> pd.DataFrame:
    """Posterior summary of the conditional and marginal Bayesian R².

    Parameters
    ----------
    fit : Fit
        A fitted model.
    quantiles : sequence of float, default (0.025, 0.975)
        Probabilities of the interval columns (``q2.5``, ``q97.5``).

    Returns
    -------
    pandas.DataFrame
        Rows ``conditional`` (with group effects) and ``marginal`` (common effects only;
        equal to ``conditional`` for a model without group terms); columns ``mean``,
        ``sd`` and one per quantile.

    Examples
    --------
    >>> bayes_r2(fit).loc["marginal", "mean"]                          # doctest: +SKIP
    """
    from bayesmixed.summary import _qlabel

    try:
        probs = [float(q) for q in quantiles]
    except (TypeError, ValueError):
        raise FitError(
            f"quantiles must be a sequence of probabilities, got {quantiles!r}."
        ) from None
    if not probs or any(not 0 <= q <= 1 for q in probs):
        raise FitError(f"quantiles must be probabilities in [0, 1], got {quantiles!r}.")
    rows = {}
    for name, include in (("conditional", True), ("marginal", False)):
        draws = r2_draws(fit, include_groups=include)
        row = {"mean": float(np.nanmean(draws)), "sd": float(np.nanstd(draws, ddof=1))}
        for q, value in zip(probs, np.nanquantile(draws, probs), strict=True):
            row[_qlabel(q)] = float(value)
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "R2"
    return table
