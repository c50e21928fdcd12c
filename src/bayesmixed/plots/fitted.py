"""The population-level picture: data coloured by group, posterior mean and band."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from bayesmixed.errors import DataError
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
    predict_band,
    prediction_grid,
    response_label,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmixed.results import Fit

__all__ = ["plot_fit"]


def plot_fit(
    fit: Fit,
    x: str,
    *,
    color_by: str | None = None,
    kind: Literal["mean", "response"] = "mean",
    ci_prob: float = 0.94,
    conditions: Mapping[str, Any] | None = None,
    legend: bool = False,
    random_seed: int | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """The data against ``x`` with the population-level posterior mean and band.

    Works for any fit, with or without group terms: the line is the posterior mean of the
    prediction without group effects (brms's ``re_formula = NA``), the band its
    ``ci_prob`` equal-tailed interval. Points are coloured by ``color_by`` (by default the
    model's first grouping variable), as in the article's figure of the fixed-effects
    model, where one line cannot follow the spread between subjects.

    Other predictors are held at their mean (numeric) or most frequent value (others)
    unless set in ``conditions``, as in brms's ``conditional_effects``.

    Parameters
    ----------
    fit : Fit
        The result of ``Model.fit()``.
    x : str
        A predictor column of the data, put on the horizontal axis.
    color_by : str, optional
        A column of the model's data that colours the points (``"Subject"``); by default
        the first grouping variable of the model, or one colour if there is none.
    kind : {"mean", "response"}, default "mean"
        Band of the mean (the family's mean parameter; a proportion for binomial models)
        or of new observations (wider: it adds the residual noise).
    ci_prob : float, default 0.94
        Mass of the band.
    conditions : mapping of str to value, optional
        Values at which to hold other predictors, e.g. ``{"period": "2"}``.
    legend : bool, default False
        Show a legend of the colours (one entry per group: long for many groups).
    random_seed : int, optional
        Seed of the response draws (``kind="response"``).
    figsize : tuple of float, optional
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One panel. Nothing is shown or saved.

    Raises
    ------
    bayesmixed.errors.DataError
        If ``x``, ``color_by`` or a key of ``conditions`` is not a column of the data.

    See Also
    --------
    plot_groups : one panel per group, with group effects.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> df = bm.datasets.sleepstudy()
    >>> fixed = bm.Model("Reaction ~ Days", df).fit(random_seed=1)     # doctest: +SKIP
    >>> fig = bm.plot_fit(fixed, "Days", color_by="Subject")           # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    check_fit(fit)
    check_column(fit, x)
    ci_prob = check_prob(ci_prob)
    if kind not in ("mean", "response"):
        raise ValueError(f"kind must be 'mean' or 'response', got {kind!r}.")
    data = fit.design.data
    colors = _color_values(fit, color_by)
    grid = prediction_grid(data, x, conditions=conditions)
    band = predict_band(
        fit, grid, kind=kind, ci_prob=ci_prob, include_groups=False, random_seed=random_seed
    )
    numeric = is_numeric(data[x])
    positions = None if numeric else category_positions(data[x])

    fig, ax = plt.subplots(figsize=figsize or (6.4, 4.4), layout="constrained")
    mean_label, band_label = band_labels(kind, ci_prob)
    draw_band(
        ax,
        grid[x].to_numpy(),
        band,
        numeric=numeric,
        color="C0" if colors is None else "black",
        positions=positions,
        label=f"{mean_label} (population level)",
        band_label=band_label,
    )
    y = observed_response(fit)
    xs = data[x].to_numpy() if numeric else np.array([positions[v] for v in data[x]])
    if colors is None:
        ax.scatter(xs, y, s=14, color="C1", alpha=0.8, zorder=2)
    else:
        levels = list(pd.unique(colors))
        cmap = plt.get_cmap("tab20" if len(levels) > 10 else "tab10")
        for i, level in enumerate(levels):
            sel = (colors == level).to_numpy()
            ax.scatter(
                xs[sel], y[sel], s=14, color=cmap(i % cmap.N), alpha=0.8, zorder=2,
                label=str(level),
            )
    if not numeric:
        ax.set_xticks(list(positions.values()), [str(c) for c in positions])
    ax.set_xlabel(x)
    ax.set_ylabel(response_label(fit))
    title = "population level" if fit.design.factors else "fixed effects"
    ax.set_title(f"{fit.model.formula}: {title}", fontsize="medium")
    if legend:
        ax.legend(
            *legend_entries(ax),
            title=color_by if colors is not None else None,
            fontsize="small",
            ncols=2 if colors is not None and len(pd.unique(colors)) > 10 else 1,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
        )
    return fig


def _color_values(fit: Fit, color_by: str | None) -> pd.Series | None:
    """The colouring column, aligned with the rows the model used."""
    design = fit.design
    if color_by is None:
        if not design.factors:
            return None
        fac = design.factors[0]
        color_by = fac.variables[0] if len(fac.variables) == 1 else None
        if color_by is None:
            return pd.Series(np.asarray(fac.levels, dtype=object)[fac.index])
    if color_by in design.data.columns:
        return design.data[color_by].astype(str).reset_index(drop=True)
    full = fit.model.data
    if color_by not in full.columns:
        raise DataError(
            f"color_by={color_by!r} is not a column of the data; columns: "
            f"{', '.join(map(repr, full.columns))}."
        )
    used = [c for c in design.data.columns if c in full.columns]
    kept = full.loc[full[used].notna().all(axis=1), color_by]
    if len(kept) != design.n:  # pragma: no cover - rows are dropped only for missing values
        raise DataError(f"Cannot align color_by={color_by!r} with the rows the model used.")
    return kept.astype(str).reset_index(drop=True)
