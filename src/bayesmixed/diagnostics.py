"""Convergence diagnostics of a fit: divergences, R-hat, effective sample sizes, singularity.

:meth:`bayesmixed.Model.fit` calls :func:`check_fit` on every fit, which emits at most one
:class:`~bayesmixed.errors.ConvergenceWarning` (naming the parameters, with the summary's
labels, and what to do) and at most one :class:`~bayesmixed.errors.SingularFitWarning`.
:meth:`bayesmixed.Fit.diagnostics` returns the :class:`Diagnostics` behind them.

The thresholds follow Vehtari et al. (2021), "Rank-normalization, folding, and
localization: an improved R-hat": R-hat below 1.01 and bulk and tail effective sample sizes
of at least 400 (100 per chain with four chains) for every hyper-parameter. Group effects
(``r_<g>``) are not checked one by one: there can be thousands.

A *singular* fit, lme4's "boundary (singular) fit", has a group SD estimated at zero.
In the posterior this shows as an SD whose draws pile up against zero: their median is a
small fraction of the prior's scale (below 10%), and the draws reach down to zero (the 10%
quantile is below 35% of the median; a half-normal shape has 19%, a well-estimated SD such
as sleepstudy's 70% or more). The term then adds little the data support; lme4 suggests
simplifying the model.

Examples
--------
>>> import bayesmixed as bm
>>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
...                bm.datasets.sleepstudy()).fit(random_seed=1)      # doctest: +SKIP
>>> fit.diagnostics()                                                # doctest: +SKIP
No sampling problems: 0 divergent transitions, R-hat <= 1.01 and ESS >= 400 for 6 parameters.
...
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmixed.errors import ConvergenceWarning, SingularFitWarning
from bayesmixed.validate import warn_user

if TYPE_CHECKING:
    from bayesmixed.priors import Prior
    from bayesmixed.results import Fit

__all__ = ["ESS_MIN", "RHAT_MAX", "Diagnostics", "check_fit", "diagnose", "prior_scale"]

#: R-hat above this flags a parameter.
RHAT_MAX = 1.01
#: Bulk or tail ESS below this flags a parameter.
ESS_MIN = 400.0
# singular: q10 < _SINGULAR_SPREAD * median and median < _SINGULAR_SCALE * prior scale
_SINGULAR_SPREAD = 0.35
_SINGULAR_SCALE = 0.1


@dataclass(frozen=True)
class Diagnostics:
    """Convergence diagnostics of a fit (returned by :meth:`bayesmixed.Fit.diagnostics`).

    Attributes
    ----------
    table : pandas.DataFrame
        One row per hyper-parameter, labelled as in the summary (``sd(Days|Subject)``):
        ``r_hat``, ``ess_bulk``, ``ess_tail`` and ``problem`` (empty when fine).
    divergences : int
        Divergent transitions after tuning, all chains together.
    draws : int
        Draws kept after tuning, all chains together.
    singular : tuple of str
        Group SDs whose posterior piles up at zero (``"sd(x|g)"``).
    rhat_max, ess_min : float
        The thresholds used.
    target_accept : float or None
        The sampler's target acceptance rate (for the advice on divergences).
    chains : int
        Number of chains; R-hat needs two or more (with one it is NaN and not flagged).
    engine : str or None
        The engine that sampled (``fit.settings.engine``), for engine-specific advice.
    rows : int or None
        Rows of the data, for the advice on the Gibbs sampler.
    laplace_khat : float or None
        Fits with ``marginalize="laplace"``: the Pareto ``k_hat`` of the importance weights
        of the draws (exact joint density over the Laplace approximation's); above
        ``laplace_k_max`` the approximation is flagged. None for the other engines.
    laplace_k_max : float
        The threshold for ``laplace_khat`` (0.7, as for PSIS).
    centred : str or None
        Fits of the ``glmm`` engine: the factors whose group effects it sampled centred
        (``"none"``: all non-centred), for the advice on divergences. None otherwise.
    rows_per_level : float or None
        The fewest rows per level of any grouping factor (rows over levels), for the
        advice on divergences of ``glmm`` fits.
    family : str or None
        The model's family, for the advice on divergences of ``glmm`` fits.
    """

    table: pd.DataFrame
    divergences: int
    draws: int
    singular: tuple[str, ...] = ()
    rhat_max: float = RHAT_MAX
    ess_min: float = ESS_MIN
    target_accept: float | None = None
    chains: int = 2
    engine: str | None = None
    rows: int | None = None
    laplace_khat: float | None = None
    laplace_k_max: float = 0.7
    centred: str | None = None
    rows_per_level: float | None = None
    family: str | None = None

    @cached_property  # read several times per warning; the table does not change
    def high_rhat(self) -> list[str]:
        """Parameters with R-hat above ``rhat_max`` (or undefined with several chains)."""
        r_hat = self.table["r_hat"]
        flagged = r_hat > self.rhat_max
        if self.chains > 1:  # NaN: a chain that did not move
            flagged |= r_hat.isna()
        return list(self.table.index[flagged])

    @cached_property
    def low_ess(self) -> list[str]:
        """Parameters with bulk or tail ESS below ``ess_min`` (or undefined)."""
        ess = self.table[["ess_bulk", "ess_tail"]].min(axis=1)
        return list(self.table.index[~(ess >= self.ess_min)])

    @property
    def laplace_poor(self) -> bool:
        """The Laplace approximation's importance weights have ``k_hat > laplace_k_max``."""
        return self.laplace_khat is not None and not self.laplace_khat <= self.laplace_k_max

    @property
    def converged(self) -> bool:
        """No divergences, every R-hat and ESS within the thresholds (and, for a Laplace
        fit, its ``k_hat`` too)."""
        return not (self.divergences or self.high_rhat or self.low_ess or self.laplace_poor)

    def convergence_message(self) -> str | None:
        """The text of the convergence warning, or None when there is nothing to report."""
        if self.converged:
            return None
        lines = ["Sampling problems (see fit.diagnostics()):"]
        if self.divergences:
            share = self.divergences / max(self.draws, 1)
            target = self.target_accept or 0.8
            advice = min(0.99, round(target + (1 - target) / 2, 2))
            lines.append(
                f"- {self.divergences} divergent transitions after tuning ({share:.1%} of "
                f"{self.draws} draws): the posterior is biased where the sampler cannot go; "
                f"raise target_accept (now {target:g}), e.g. model.fit(target_accept="
                f"{max(advice, 0.95):g}), or use more informative priors."
            )
        if self.divergences and self.engine == "glmm":
            lines.append(self._glmm_divergence_advice())
        if self.high_rhat:
            shown = _shown(self.table.loc[self.high_rhat, "r_hat"], "{:.3f}")
            lines.append(
                f"- R-hat > {self.rhat_max:g} for {shown}: the chains disagree; run longer "
                "(more tune and draws)."
            )
        if self.low_ess:
            ess = self.table.loc[self.low_ess, ["ess_bulk", "ess_tail"]].min(axis=1)
            lines.append(
                f"- effective sample size < {self.ess_min:g} for {_shown(ess, '{:.0f}')}: "
                "estimates and intervals are noisy; draw more (draws=, chains=)."
            )
            lowest = float(ess.min()) / max(self.draws, 1)
            if self.engine == "gibbs" and (lowest < 0.1 or (self.rows or 0) < 1000):
                lines.append(
                    f"- the Gibbs sampler mixes slowly here (the lowest ESS is {lowest:.0%} of "
                    f"the draws{'' if self.rows is None else f'; {self.rows} rows'}): it is "
                    "meant for large models (Gaussian, or logit by Polya-Gamma augmentation), "
                    "where each sweep's blocks are well informed; use NUTS, "
                    "model.fit(sampler='numpyro'), which sampler='auto' picks for models of "
                    "this size."
                )
        if self.laplace_poor:
            lines.append(
                f"- the Laplace approximation of the group effects is poor (Pareto k_hat "
                f"{self.laplace_khat:.2f} > {self.laplace_k_max:g} for the exact density over "
                "the approximate one): fit the full model, model.fit(marginalize='auto')."
            )
        return "\n".join(lines)

    def _glmm_divergence_advice(self) -> str:
        """Why a fit of the glmm engine diverges and what to do (see docs/calibration.md)."""
        centred = self.centred or "none"
        form = ("non-centred (r = T z) for every factor" if centred == "none"
                else f"centred (r sampled directly) for {centred}, non-centred for the rest")
        few = ("" if self.rows_per_level is None
               else f" (here {self.rows_per_level:.3g} rows per level)")
        if self.family == "gaussian":
            return (
                f"- the glmm engine sampled the group effects {form}, chosen from the data. "
                f"With few rows per level{few}, a group SD near zero makes the centred form a "
                "funnel (docs/calibration.md: the Gaussian data sets that diverged had been "
                "centred; non-centred they did not). With one grouping factor, model.fit() "
                "integrates the group effects out exactly (marginalize='auto'), with no "
                "funnel; otherwise refit with model.fit(target_accept=0.99) or drop group "
                "slopes whose SD is near zero."
            )
        return (
            f"- the glmm engine sampled the group effects {form}, chosen from the data. "
            f"With few rows per level{few} the data barely inform the group SDs and the "
            "posterior is a funnel in them that neither form removes (docs/calibration.md: "
            "about one small Poisson data set in four). Refit with model.fit(target_accept="
            "0.99), give the SDs priors that rule out implausibly large values (e.g. "
            "priors={'sd(g)': bm.Prior('HalfNormal', sigma=0.5)}), or drop group slopes "
            "the data cannot support."
        )

    def singular_message(self) -> str | None:
        """lme4's "boundary (singular) fit" in words, or None."""
        if not self.singular:
            return None
        return (
            f"boundary (singular) fit: {', '.join(self.singular)} piles up at zero (draws "
            "reach down to 0, the median is far below the prior's scale). The data hold little "
            "evidence that these terms vary between groups; consider dropping them or making "
            "the block uncorrelated (x || g), as lme4's isSingular() advice says."
        )

    def __repr__(self) -> str:
        head = self.convergence_message() or (
            f"No sampling problems: {self.divergences} divergent transitions, R-hat <= "
            f"{self.rhat_max:g} and ESS >= {self.ess_min:g} for {len(self.table)} parameters."
        )
        if self.chains == 1:
            head += " R-hat needs two or more chains; with one it is not checked."
        if self.laplace_khat is not None and not self.laplace_poor:
            head += (f" Laplace approximation: Pareto k_hat {self.laplace_khat:.2f} <= "
                     f"{self.laplace_k_max:g}.")
        parts = [head]
        if self.singular:
            parts.append(self.singular_message() or "")
        with pd.option_context("display.width", 120):
            parts.append(self.table.round({"r_hat": 3, "ess_bulk": 0, "ess_tail": 0}).to_string())
        return "\n".join(parts)


def _shown(values: pd.Series, fmt: str, limit: int = 8) -> str:
    items = [f"{label} ({fmt.format(v)})" for label, v in values.items()]
    if len(items) > limit:
        items = [*items[:limit], f"and {len(items) - limit} more"]
    return ", ".join(items)


def prior_scale(prior: Prior) -> float | None:
    """A typical size of a positive prior (its scale parameter), or None if unknown.

    ``HalfNormal(sigma)`` (or ``tau``), ``HalfStudentT(nu, sigma)``: ``sigma``;
    ``HalfCauchy(beta)``: ``beta``; ``Exponential(lam)``: ``1 / lam``; ``Gamma``: its mean
    (read from the prior table, :func:`bayesmixed.prior_table.typical_scale`).
    """
    from bayesmixed.prior_table import typical_scale

    return typical_scale(prior)


def _singular(fit: Fit) -> tuple[str, ...]:
    from bayesmixed.summary import hyper_draws

    draws = hyper_draws(fit.posterior, fit.design)
    priors = fit.model.priors.sd
    out = []
    for label, prior in priors.items():
        scale = prior_scale(prior)
        values = np.asarray(draws.get(label, ())).reshape(-1)
        if scale is None or values.size < 20:
            continue
        median = float(np.median(values))
        low = float(np.quantile(values, 0.10))
        if low < _SINGULAR_SPREAD * median and median < _SINGULAR_SCALE * scale:
            out.append(label)
    return tuple(out)


def diagnose(fit: Fit, *, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN) -> Diagnostics:
    """Diagnostics of a fit's hyper-parameters and sampler.

    Parameters
    ----------
    fit : Fit
    rhat_max : float, default 1.01
        R-hat above this flags a parameter.
    ess_min : float, default 400
        Bulk or tail effective sample size below this flags a parameter.

    Returns
    -------
    Diagnostics
    """
    table = fit.summary()[["r_hat", "ess_bulk", "ess_tail"]].copy()
    stats = _sample_stats(fit.idata)
    diverging = stats.get("diverging") if stats is not None else None
    divergences = int(np.asarray(diverging).sum()) if diverging is not None else 0
    posterior = fit.idata["posterior"]
    draws = int(posterior.sizes.get("chain", 1) * posterior.sizes.get("draw", 0))
    singular = _singular(fit)
    chains = int(posterior.sizes.get("chain", 1))
    engine = getattr(fit.settings, "engine", None)
    problem = []
    for label, row in table.iterrows():
        flags = []
        if row["r_hat"] > rhat_max or (chains > 1 and np.isnan(row["r_hat"])):
            flags.append(f"R-hat > {rhat_max:g}")
        if not min(row["ess_bulk"], row["ess_tail"]) >= ess_min:
            flags.append(f"ESS < {ess_min:g}")
        if label in singular:
            flags.append("singular")
        problem.append(", ".join(flags))
    table["problem"] = problem
    return Diagnostics(
        table=table,
        divergences=divergences,
        draws=draws,
        singular=singular,
        rhat_max=rhat_max,
        ess_min=ess_min,
        target_accept=getattr(fit.settings, "target_accept", None),
        chains=chains,
        engine=engine,
        rows=getattr(getattr(fit, "design", None), "n", None),
        laplace_khat=_laplace_khat(posterior),
        laplace_k_max=_laplace_k_max(),
        centred=posterior.attrs.get("centred") if engine == "glmm" else None,
        rows_per_level=_rows_per_level(getattr(fit, "design", None)),
        family=getattr(getattr(fit, "design", None), "family_name", None),
    )


def _rows_per_level(design: Any) -> float | None:
    """Rows over levels of the grouping factor with the most levels (None without any)."""
    factors = getattr(design, "factors", None) or ()
    levels = max((len(fac.levels) for fac in factors), default=0)
    return None if not levels else float(design.n) / levels


def _laplace_khat(posterior: Any) -> float | None:
    value = posterior.attrs.get("laplace_pareto_k")
    return None if value is None else float(value)


def _laplace_k_max() -> float:
    from bayesmixed.engines.laplace import PARETO_K_MAX

    return PARETO_K_MAX


def _sample_stats(idata: Any):
    try:
        return idata["sample_stats"]
    except KeyError:
        return None


def check_fit(
    fit: Fit,
    *,
    warn: bool = True,
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
) -> Diagnostics:
    """Diagnose a fit and warn about what went wrong (called by :meth:`Model.fit`).

    Parameters
    ----------
    fit : Fit
    warn : bool, default True
        Emit one :class:`~bayesmixed.errors.ConvergenceWarning` (divergences, R-hat, ESS)
        and one :class:`~bayesmixed.errors.SingularFitWarning` when there is something to
        report; with False, only return the diagnostics.
    rhat_max, ess_min : float
        Thresholds, see :func:`diagnose`.

    Returns
    -------
    Diagnostics
    """
    result = diagnose(fit, rhat_max=rhat_max, ess_min=ess_min)
    if warn:
        message = result.convergence_message()
        if message:
            warn_user(message, ConvergenceWarning)
        singular = result.singular_message()
        if singular:
            warn_user(singular, SingularFitWarning)
    return result
