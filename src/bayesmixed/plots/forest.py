"""Forest plot of one term's per-group coefficients (the article's slopes by subject)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import xarray as xr

from bayesmixed.layout import CHAIN, DRAW
from bayesmixed.plots._common import BACKEND, check_fit, check_prob, pc_figure, pick_factor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmixed.results import Fit

__all__ = ["plot_forest"]


def plot_forest(
    fit: Fit,
    term: str,
    *,
    group: str | None = None,
    kind: Literal["coef", "ranef"] = "coef",
    ci_prob: float = 0.94,
    combined: bool = True,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Posterior interval of one term for every level of a grouping factor.

    With ``kind="coef"`` each row is a level's coefficient, fixed effect plus group
    effect (lme4's ``coef()``), and a dashed line marks the posterior mean of the fixed
    effect; with ``kind="ranef"`` each row is the group deviation (``ranef()``) and the
    line is at 0. Thick bars are 50% intervals, thin ones ``ci_prob`` (equal-tailed), the
    dot the posterior mean; the title says so. Drawn by :func:`arviz_plots.plot_forest`.

    Parameters
    ----------
    fit : Fit
        The result of ``Model.fit()``.
    term : str
        A group-level term, as in ``fit.ranef()[group].columns`` (``"Intercept"``,
        ``"Days"``).
    group : str, optional
        The grouping factor (``"Subject"``); may be left out when one factor has ``term``.
    kind : {"coef", "ranef"}, default "coef"
        Coefficients (fixed + group effect) or group deviations.
    ci_prob : float, default 0.94
        Mass of the thin intervals.
    combined : bool, default True
        Pool the chains; ``False`` draws one interval per chain (ArviZ's default).
    figsize : tuple of float, optional
        Figure size in inches; by default it grows with the number of levels.

    Returns
    -------
    matplotlib.figure.Figure
        A label panel and an interval panel. Nothing is shown or saved.

    Raises
    ------
    bayesmixed.errors.FitError
        If the model has no such term or factor.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
    ...                bm.datasets.sleepstudy()).fit(random_seed=1)    # doctest: +SKIP
    >>> fig = bm.plot_forest(fit, "Days")                              # doctest: +SKIP
    >>> fig = bm.plot_forest(fit, "Intercept", kind="ranef")           # doctest: +SKIP
    """
    import arviz_plots as azp

    from bayesmixed.summary import coef_draws, hyper_draws

    check_fit(fit)
    ci_prob = check_prob(ci_prob)
    if kind not in ("coef", "ranef"):
        raise ValueError(f"kind must be 'coef' or 'ranef', got {kind!r}.")
    fac = pick_factor(fit, group, term)
    k = fac.terms.index(term)
    posterior = fit.posterior
    layout = fit.design.layout
    names = layout.factor(fac.label)
    if kind == "coef":
        values = coef_draws(posterior, fit.design, fac.label)[..., k]
        fixed = layout.column_labels
        ref = (
            float(hyper_draws(posterior, fit.design)[fixed[term]].mean())
            if term in fixed
            else 0.0
        )
        xlabel = f"{term}: fixed + {fac.label} effect" if term in fixed else term
    else:
        values = posterior[names.r].values[..., k]
        ref = 0.0
        xlabel = f"{term}: {fac.label} deviation from the fixed effect"
    # the variable is named as r_<g> (never a dimension name); the axis label says the term
    ds = xr.Dataset(
        {names.r: ((CHAIN, DRAW, names.level_dim), values)},
        coords={names.level_dim: list(fac.levels)},
    )
    if figsize is None:
        figsize = (6.0, 1.0 + 0.28 * len(fac.levels) * (1 if combined else values.shape[0]))
    pc = azp.plot_forest(
        ds,
        combined=combined,
        ci_probs=(0.5, ci_prob),
        point_estimate="mean",
        ci_kind="eti",
        labels=[names.level_dim],
        backend=BACKEND,
        figure_kwargs={"figsize": figsize, "width_ratios": [1, 4]},
    )
    ax = pc.viz["plot"].sel(column="forest").item()
    ax.axvline(ref, color="0.5", linestyle="--", linewidth=1, zorder=0)
    ax.set_xlabel(xlabel)
    fig = pc_figure(pc)
    what = "coefficient" if kind == "coef" else "deviation"
    fig.suptitle(
        f"{term} by {fac.label}: posterior mean, 50% and {ci_prob:.0%} intervals of each "
        f"level's {what}",
        fontsize="medium",
    )
    fig.set_layout_engine("constrained")
    return fig
