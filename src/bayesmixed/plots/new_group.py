"""An unseen group (the article's new participant): predictive band and coefficient pairs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from bayesmixed.layout import draws_name
from bayesmixed.plots._common import (
    BACKEND,
    band_labels,
    category_positions,
    check_column,
    check_fit,
    check_prob,
    draw_band,
    is_numeric,
    legend_entries,
    new_level_label,
    observed_response,
    pc_figure,
    pick_factor,
    predict_band,
    prediction_grid,
    response_label,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmixed.results import Fit

__all__ = ["plot_new_group", "plot_new_group_pairs"]

_NEW_GROUPS = ("gaussian", "uncertainty", "old_levels")


def plot_new_group(
    fit: Fit,
    x: str,
    *,
    group: str | None = None,
    kind: Literal["response", "mean"] = "response",
    new_groups: Literal["gaussian", "uncertainty", "old_levels"] = "gaussian",
    ci_prob: float = 0.94,
    conditions: Mapping[str, Any] | None = None,
    show_data: bool = True,
    random_seed: int | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Predictive mean and band along ``x`` for a level of ``group`` the fit has not seen.

    The new level's effects are drawn, once per posterior draw, from the fitted
    distribution of the group effects (``new_groups="gaussian"``: the group SDs and
    correlations), so the band holds both the spread between groups and, with
    ``kind="response"``, the residual noise: where a new participant's measurements are
    expected to fall. Grouping variables of other factors are new levels too (so their
    effects are drawn the same way) unless fixed in ``conditions``; other predictors are
    held at their mean or most frequent value.

    Parameters
    ----------
    fit : Fit
        The result of ``Model.fit()`` with at least one group term.
    x : str
        A predictor column, put on the horizontal axis.
    group : str, optional
        The grouping factor of the new level; may be left out when the model has one.
    kind : {"response", "mean"}, default "response"
        Band of new observations or of the new level's mean.
    new_groups : {"gaussian", "uncertainty", "old_levels"}, default "gaussian"
        How the new level's effects are drawn; see :meth:`bayesmixed.Fit.predict`.
    ci_prob : float, default 0.94
        Mass of the band.
    conditions : mapping of str to value, optional
        Values at which to hold other predictors or grouping variables.
    show_data : bool, default True
        Draw the observed data in grey behind the band.
    random_seed : int, optional
        Seed of the new effects and response draws.
    figsize : tuple of float, optional
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One panel. Nothing is shown or saved.

    Raises
    ------
    bayesmixed.errors.FitError
        If the model has no such grouping factor.

    See Also
    --------
    plot_new_group_pairs : the joint posterior of the new level's coefficients.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
    ...                bm.datasets.sleepstudy()).fit(random_seed=1)    # doctest: +SKIP
    >>> fig = bm.plot_new_group(fit, "Days", random_seed=1)            # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    check_fit(fit)
    check_column(fit, x)
    ci_prob = check_prob(ci_prob)
    if kind not in ("mean", "response"):
        raise ValueError(f"kind must be 'mean' or 'response', got {kind!r}.")
    _check_new_groups(new_groups)
    fac = pick_factor(fit, group)
    design = fit.design
    data = design.data
    held: dict[str, Any] = {}
    for other in design.factors:
        for var in other.variables:
            if var != x:
                held[var] = new_level_label(data[var].astype(str).unique())
    held.update(conditions or {})
    grid = prediction_grid(data, x, conditions=held)
    band = predict_band(
        fit, grid, kind=kind, ci_prob=ci_prob, new_groups=new_groups, random_seed=random_seed
    )
    numeric = is_numeric(data[x])
    positions = None if numeric else category_positions(data[x])

    fig, ax = plt.subplots(figsize=figsize or (6.4, 4.4), layout="constrained")
    if show_data:
        xs = data[x].to_numpy() if numeric else np.array([positions[v] for v in data[x]])
        ax.scatter(xs, observed_response(fit), s=10, color="0.6", alpha=0.6, zorder=2,
                   label=f"observed data (all {fac.label} levels)")
    mean_label, band_label = band_labels(kind, ci_prob)
    draw_band(
        ax,
        grid[x].to_numpy(),
        band,
        numeric=numeric,
        positions=positions,
        band_color="C0",
        band_alpha=0.25,
        label=f"{mean_label}, new {fac.label}",
        band_label=band_label,
    )
    if not numeric:
        ax.set_xticks(list(positions.values()), [str(c) for c in positions])
    ax.set_xlabel(x)
    ax.set_ylabel(response_label(fit))
    ax.set_title(f"A new {fac.label}: posterior predictive", fontsize="medium")
    ax.legend(*legend_entries(ax), fontsize="small", loc="best")
    return fig


def plot_new_group_pairs(
    fit: Fit,
    *,
    group: str | None = None,
    kind: Literal["coef", "ranef"] = "coef",
    new_groups: Literal["gaussian", "uncertainty", "old_levels"] = "gaussian",
    random_seed: int | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Joint posterior of the coefficients of one new level of a grouping factor.

    A pair plot: the marginal density of each coefficient on the diagonal, the density
    contours of each pair below it. With correlated group effects ``(Days | Subject)``
    the contours show the correlation a new subject's intercept and slope are expected
    to have. Drawn by :func:`arviz_plots.plot_pair` (a single density,
    :func:`arviz_plots.plot_dist`, when the factor has one term).

    Parameters
    ----------
    fit : Fit
        The result of ``Model.fit()`` with at least one group term.
    group : str, optional
        The grouping factor; may be left out when the model has one.
    kind : {"coef", "ranef"}, default "coef"
        Coefficients, fixed effect + new group effect (the article's ``alpha_new``), or
        the group deviations alone.
    new_groups : {"gaussian", "uncertainty", "old_levels"}, default "gaussian"
        How the new level's effects are drawn; see :meth:`bayesmixed.Fit.new_group_effects`.
    random_seed : int, optional
        Seed of the new effects.
    figsize : tuple of float, optional
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        A lower-triangular grid, one row and column per group term. Nothing is shown or
        saved.

    Raises
    ------
    bayesmixed.errors.FitError
        If the model has no such grouping factor.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
    ...                bm.datasets.sleepstudy()).fit(random_seed=1)    # doctest: +SKIP
    >>> fig = bm.plot_new_group_pairs(fit, group="Subject", random_seed=1)  # doctest: +SKIP
    """
    import arviz_plots as azp

    check_fit(fit)
    if kind not in ("coef", "ranef"):
        raise ValueError(f"kind must be 'coef' or 'ranef', got {kind!r}.")
    _check_new_groups(new_groups)
    fac = pick_factor(fit, group)
    effects = fit.new_group_effects(
        fac.label,
        1,
        new_groups=new_groups,
        include_fixed=kind == "coef",
        random_seed=random_seed,
    )
    first = effects.isel(level=0, drop=True)
    ds = first.assign_coords(term=[draws_name(t) for t in fac.terms]).to_dataset(dim="term")
    size = len(fac.terms)
    if figsize is None:
        figsize = (max(4.0, 2.6 * size), max(3.0, 2.6 * size))
    if size == 1:
        pc = azp.plot_dist(ds, kind="kde", backend=BACKEND, figure_kwargs={"figsize": figsize})
    else:
        pc = azp.plot_pair(
            ds,
            marginal=True,
            marginal_kind="kde",
            triangle="lower",
            backend=BACKEND,
            visuals={"scatter": False, "contour": True},
            figure_kwargs={"figsize": figsize},
        )
    fig = pc_figure(pc)
    for ax in fig.axes:
        if ax.lines and not ax.collections:  # a marginal density: its height means little
            ax.tick_params(axis="y", left=False, labelleft=False)
    what = "coefficients" if kind == "coef" else "group effects"
    fig.suptitle(f"A new {fac.label}: {what}")
    fig.set_layout_engine("constrained")
    return fig


def _check_new_groups(new_groups: str) -> None:
    """Refuse a ``new_groups`` value ``Fit.new_group_effects`` does not know."""
    if new_groups not in _NEW_GROUPS:
        raise ValueError(
            f"new_groups must be one of {', '.join(map(repr, _NEW_GROUPS))}, got "
            f"{new_groups!r}."
        )
