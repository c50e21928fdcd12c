"""One panel per group: data, posterior predictive mean and band (the article's 6 x 3 grid)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from bayesmixed.errors import FitError
from bayesmixed.plots._common import (
    band_labels,
    category_positions,
    check_column,
    check_fit,
    check_prob,
    draw_band,
    is_numeric,
    legend_entries,
    observed_response,
    pick_factor,
    predict_band,
    prediction_grid,
    response_label,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmixed.results import Fit

__all__ = ["plot_groups"]


def plot_groups(
    fit: Fit,
    x: str,
    *,
    group: str | None = None,
    levels: Sequence[str] | None = None,
    ncols: int = 3,
    kind: Literal["response", "mean"] = "response",
    ci_prob: float = 0.94,
    conditions: Mapping[str, Any] | None = None,
    sharey: bool = True,
    random_seed: int | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One panel per level of a grouping factor: its data, predictive mean and band.

    Each panel shows the level's observations against ``x`` and the posterior
    predictions with that level's group effects: the mean and a ``ci_prob`` equal-tailed
    band of new observations (``kind="response"``, the article's posterior predictive) or
    of the mean (``kind="mean"``). Predictions run along the level's own range of ``x``;
    other predictors are held at the level's mean (numeric) or most frequent value
    (others) unless set in ``conditions``. Panels share their axes and are titled by
    level, and a legend under them names the observed data, the mean and the band.

    Parameters
    ----------
    fit : Fit
        The result of ``Model.fit()`` with at least one group term.
    x : str
        A predictor column, put on the horizontal axes.
    group : str, optional
        The grouping factor (``"Subject"``); may be left out when the model has one.
    levels : sequence of str, optional
        Levels to draw, in this order; all levels by default.
    ncols : int, default 3
        Panels per row.
    kind : {"response", "mean"}, default "response"
        Band of new observations or of the mean.
    ci_prob : float, default 0.94
        Mass of the band.
    conditions : mapping of str to value, optional
        Values at which to hold other predictors.
    sharey : bool, default True
        The same y-limits in every panel, so levels compare at a glance.
    random_seed : int, optional
        Seed of the response draws.
    figsize : tuple of float, optional
        Figure size in inches; by default 3 x 1.7 inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per level (unused cells of the last row are removed). Nothing is shown
        or saved.

    Raises
    ------
    bayesmixed.errors.FitError
        If the model has no such grouping factor or a level is unknown.
    bayesmixed.errors.DataError
        If ``x`` or a key of ``conditions`` is not a column the model uses.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
    ...                bm.datasets.sleepstudy()).fit(random_seed=1)    # doctest: +SKIP
    >>> fig = bm.plot_groups(fit, "Days", ncols=3)                     # doctest: +SKIP
    >>> fig = bm.plot_groups(fit, "Days", levels=["308", "309"])       # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    check_fit(fit)
    check_column(fit, x)
    ci_prob = check_prob(ci_prob)
    if kind not in ("mean", "response"):
        raise ValueError(f"kind must be 'mean' or 'response', got {kind!r}.")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}.")
    fac = pick_factor(fit, group)
    if levels is None:
        chosen = list(fac.levels)
    else:
        chosen = [str(lv) for lv in ([levels] if isinstance(levels, str) else levels)]
        unknown = [lv for lv in chosen if lv not in fac.levels]
        if unknown:
            raise FitError(
                f"Unknown level(s) {', '.join(map(repr, unknown))} of {fac.label!r}; its "
                f"levels are {', '.join(map(repr, fac.levels))}."
            )
    data = fit.design.data
    numeric = is_numeric(data[x])
    positions = None if numeric else category_positions(data[x])
    y = observed_response(fit)
    mean_label, band_label = band_labels(kind, ci_prob)

    grids, rows = [], []
    for level in chosen:
        mask = fac.index == fac.levels.index(level)
        sub = data.loc[mask]
        held = {v: sub[v].iloc[0] for v in fac.variables if v != x}
        held.update(conditions or {})
        grid = prediction_grid(
            sub, x, x_grid=_level_x(sub[x], numeric), conditions=held
        )
        grids.append(grid)
        rows.append(mask)
    stacked = pd.concat(grids, ignore_index=True)
    band = predict_band(
        fit, stacked, kind=kind, ci_prob=ci_prob, random_seed=random_seed
    )

    nrows = -(-len(chosen) // ncols)
    ncols_used = min(ncols, len(chosen))
    if figsize is None:
        figsize = (3.0 * ncols_used, 1.7 * nrows + 0.6)
    fig, axes = plt.subplots(
        nrows,
        ncols_used,
        figsize=figsize,
        sharex=True,
        sharey=sharey,
        squeeze=False,
        layout="constrained",
    )
    start = 0
    for i, (level, grid, mask) in enumerate(zip(chosen, grids, rows, strict=True)):
        ax = axes.flat[i]
        part = band.iloc[start : start + len(grid)].reset_index(drop=True)
        start += len(grid)
        first = i == 0  # the legend is drawn once, from the first panel
        draw_band(
            ax,
            grid[x].to_numpy(),
            part,
            numeric=numeric,
            positions=positions,
            label=mean_label if first else None,
            band_label=band_label if first else None,
        )
        xs = data.loc[mask, x].to_numpy()
        if not numeric:
            xs = np.array([positions[v] for v in xs])
        ax.scatter(xs, y[mask], s=12, color="C1", zorder=4,
                   label="observed data" if first else None)
        ax.set_title(level, fontsize="medium")
    for ax in axes.flat[len(chosen) :]:
        ax.remove()
    if not numeric:
        axes.flat[0].set_xticks(list(positions.values()), [str(c) for c in positions])
    fig.supxlabel(x)
    fig.supylabel(response_label(fit))
    what = "new observations" if kind == "response" else "mean"
    fig.suptitle(f"{fac.label}: posterior mean and {ci_prob:.0%} band of the {what}")
    handles, labels = legend_entries(axes.flat[0])
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=len(labels),
        fontsize="small",
        frameon=False,
    )
    return fig


def _level_x(values: pd.Series, numeric: bool) -> np.ndarray:
    """Points along ``x`` for one level: its distinct values, or a grid when many."""
    distinct = pd.unique(values)
    if not numeric or len(distinct) <= 25:
        return np.sort(distinct) if numeric else np.asarray(distinct)
    return np.linspace(values.min(), values.max(), 25)
