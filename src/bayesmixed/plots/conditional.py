"""Conditional effects: the prediction along one predictor, the others held fixed.

As brms's ``conditional_effects`` and Bambi's ``interpret.plot_predictions``: a grid runs
along ``x`` (100 points over its range when numeric, every category otherwise), every other
predictor the model uses is held at its mean (numeric) or reference level (categorical:
the first category, as the design's contrasts take it), unless set in ``conditions``;
whole-number counts of a binomial response (the trials) are held at their rounded mean.
``by`` adds one line per value (colour) and ``panels`` one panel per value; numeric ``by``
or ``panels`` columns take brms's three values, mean - SD, mean and mean + SD.

:func:`conditional_effects` returns the grid with the posterior mean and interval of each
row; :func:`plot_conditional` draws it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmixed.errors import DataError
from bayesmixed.plots._common import (
    check_fit,
    check_prob,
    is_numeric,
    new_level_label,
    predict_band,
    response_label,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmixed.results import Fit

__all__ = ["conditional_effects", "plot_conditional"]

#: points along a numeric ``x`` (brms's ``resolution``)
RESOLUTION = 100


def conditional_effects(
    fit: Fit,
    x: str,
    *,
    by: str | None = None,
    panels: str | None = None,
    include_groups: bool = False,
    kind: str = "mean",
    ci_prob: float = 0.95,
    conditions: Mapping[str, Any] | None = None,
    resolution: int = RESOLUTION,
    random_seed: int | None = None,
) -> pd.DataFrame:
    """The grid of a conditional-effects plot with the posterior mean and interval.

    Parameters
    ----------
    fit : Fit
        The result of ``Model.fit()`` (or of ``Model.sample_prior()``).
    x : str
        A predictor column of the model's data (numeric or categorical).
    by : str, optional
        A column whose values get one line (colour) each.
    panels : str, optional
        A column whose values get one panel each.
    include_groups : bool, default False
        ``False``: population-level predictions (brms's ``re_formula = NA``). ``True``:
        with group effects; a grouping column set by ``x``, ``by``, ``panels`` or
        ``conditions`` uses that level's effects, any other grouping factor a new level
        drawn from the fitted normal (``new_groups="gaussian"``).
    kind : str, default "mean"
        What is predicted, as in :meth:`bayesmixed.Fit.predict`: ``"mean"`` (the
        family's mean), ``"response"`` (new observations) or ``"linear"`` (the linear
        predictor, link scale).
    ci_prob : float, default 0.95
        Mass of the equal-tailed interval.
    conditions : mapping of str to value, optional
        Values at which to hold other predictors, e.g. ``{"period": "2"}``.
    resolution : int, default 100
        Number of grid points along a numeric ``x``.
    random_seed : int, optional
        Seed of response draws and new-level effects.

    Returns
    -------
    pandas.DataFrame
        One row per grid point: every column the model uses (the values predicted at),
        then ``mean``, ``lower`` and ``upper``.

    Raises
    ------
    bayesmixed.errors.DataError
        If ``x``, ``by``, ``panels`` or a key of ``conditions`` is not a column the
        model uses, or the same column is given twice.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
    ...                bm.datasets.sleepstudy()).fit(random_seed=1)      # doctest: +SKIP
    >>> bm.conditional_effects(fit, "Days").head()                      # doctest: +SKIP
    """
    check_fit(fit)
    ci_prob = check_prob(ci_prob)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2:
        raise ValueError(f"resolution must be an integer of at least 2, got {resolution!r}.")
    grid, new_groups = _grid(
        fit, x, by, panels, bool(include_groups), kind, conditions, resolution
    )
    band = predict_band(
        fit,
        grid,
        kind=kind,
        ci_prob=ci_prob,
        include_groups=bool(include_groups),
        new_groups=new_groups,
        random_seed=random_seed,
    )
    band.index = grid.index
    return pd.concat([grid, band], axis=1)


def plot_conditional(
    fit: Fit,
    x: str,
    *,
    by: str | None = None,
    panels: str | None = None,
    include_groups: bool = False,
    kind: str = "mean",
    ci_prob: float = 0.95,
    conditions: Mapping[str, Any] | None = None,
    points: bool = False,
    resolution: int = RESOLUTION,
    ncols: int = 3,
    random_seed: int | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Posterior mean and interval of the prediction along one predictor.

    A numeric ``x`` gives a line and a shaded band, a categorical one a point and an
    error bar per category (dodged when ``by`` is set). The numbers drawn are those of
    :func:`conditional_effects` with the same arguments.

    Parameters
    ----------
    fit : Fit
        The result of ``Model.fit()`` (or of ``Model.sample_prior()``).
    x : str
        A predictor column of the model's data, put on the horizontal axis.
    by, panels, include_groups, kind, ci_prob, conditions, resolution, random_seed
        As in :func:`conditional_effects`.
    points : bool, default False
        Also draw the observed data (response against ``x``), on the mean's scale.
    ncols : int, default 3
        Panels per row when ``panels`` is set.
    figsize : tuple of float, optional
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One panel, or one per value of ``panels``; a legend titled ``by`` when ``by`` is
        set. Nothing is shown or saved.

    See Also
    --------
    conditional_effects : the numbers drawn, as a data frame.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
    ...                bm.datasets.sleepstudy()).fit(random_seed=1)      # doctest: +SKIP
    >>> fig = bm.plot_conditional(fit, "Days")                          # doctest: +SKIP
    >>> fig = bm.plot_conditional(fit, "Days", by="Subject",
    ...                           include_groups=True)                  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}.")
    table = conditional_effects(
        fit,
        x,
        by=by,
        panels=panels,
        include_groups=include_groups,
        kind=kind,
        ci_prob=ci_prob,
        conditions=conditions,
        resolution=resolution,
        random_seed=random_seed,
    )
    data = fit.design.data
    numeric = is_numeric(data[x])
    panel_values = list(pd.unique(table[panels])) if panels else [None]
    by_values = list(pd.unique(table[by])) if by else [None]
    n_panels = len(panel_values)
    cols = min(ncols, n_panels)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        squeeze=False,
        sharex=True,
        sharey=True,
        figsize=figsize or (min(4.2 * cols, 13.0), 3.6 * rows + 0.6),
        layout="constrained",
    )
    cmap = plt.get_cmap("tab20" if len(by_values) > 10 else "tab10")
    categories = _categories(data[x]) if not numeric else []
    offsets = _dodge(len(by_values))
    for p, (panel, ax) in enumerate(zip(panel_values, axes.flat, strict=False)):
        part = table if panels is None else table[table[panels] == panel]
        for i, value in enumerate(by_values):
            rows_i = part if by is None else part[part[by] == value]
            color = cmap(i % cmap.N)
            label = None if by is None else _format(value)
            if numeric:
                xs = rows_i[x].to_numpy(dtype=float)
                ax.fill_between(
                    xs,
                    rows_i["lower"].to_numpy(),
                    rows_i["upper"].to_numpy(),
                    color=color,
                    alpha=0.25 if by is not None else 0.35,
                    linewidth=0,
                )
                ax.plot(xs, rows_i["mean"].to_numpy(), color=color, label=label)
            else:
                pos = np.array([categories.index(v) for v in rows_i[x]]) + offsets[i]
                mean = rows_i["mean"].to_numpy()
                err = np.vstack(
                    [mean - rows_i["lower"].to_numpy(), rows_i["upper"].to_numpy() - mean]
                )
                ax.errorbar(
                    pos, mean, yerr=err, fmt="o", color=color, capsize=4, label=label
                )
        if points:
            _draw_points(ax, fit, x, panels, panel, categories)
        if panels is not None:
            ax.set_title(f"{panels} = {_format(panel)}", fontsize="medium")
        if not numeric:
            ax.set_xticks(range(len(categories)), [str(c) for c in categories])
        if p + cols >= n_panels:  # lowest panel of its column
            ax.set_xlabel(x)
            ax.xaxis.set_tick_params(labelbottom=True)
        if p % cols == 0:
            ax.set_ylabel(_y_label(fit, kind))
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    if by is not None:
        axes.flat[0].legend(
            title=by,
            fontsize="small",
            ncols=2 if len(by_values) > 10 else 1,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0) if n_panels == 1 else None,
        )
    what = "with group effects" if include_groups else "population level"
    fig.suptitle(f"Conditional effect of {x} ({what}, {ci_prob:.0%} interval)", fontsize="medium")
    return fig


# -- the grid ------------------------------------------------------------------------------------


def _grid(
    fit: Fit,
    x: str,
    by: str | None,
    panels: str | None,
    include_groups: bool,
    kind: str,
    conditions: Mapping[str, Any] | None,
    resolution: int,
) -> tuple[pd.DataFrame, str]:
    """Rows along ``x`` crossed with the ``by`` and ``panels`` values; others held fixed.

    The grid has the columns a prediction reads: the predictors, the grouping columns
    (with ``include_groups``) and the counts of a binomial response (``kind="response"``).
    """
    data = fit.design.data
    group_columns = [v for fac in fit.design.factors for v in fac.variables]
    predictors = _predictor_columns(fit)
    usable = [c for c in data.columns if c in predictors or c in group_columns]
    varying: dict[str, str] = {}
    for name, column in (("x", x), ("by", by), ("panels", panels)):
        if column is None:
            continue
        if not isinstance(column, str) or column not in usable:
            raise DataError(
                f"{name}={column!r} is not a predictor or grouping column of the model; "
                f"choose one of {', '.join(map(repr, usable))}."
            )
        used_as = [k for k, v in varying.items() if v == column]
        if used_as:
            raise DataError(
                f"{name}={column!r} is already used as {used_as[0]}; choose another column."
            )
        varying[name] = column
    if conditions is not None and not isinstance(conditions, Mapping):
        raise DataError(
            f"conditions must be a dict of column to value, got {type(conditions).__name__}."
        )
    conditions = dict(conditions or {})
    unknown = [c for c in conditions if c not in data.columns]
    if unknown:
        raise DataError(
            f"conditions name column(s) {', '.join(map(repr, unknown))} that the model does "
            f"not use; its columns are {', '.join(map(repr, data.columns))}."
        )
    clash = [c for c in conditions if c in varying.values()]
    if clash:
        raise DataError(
            f"conditions set {', '.join(map(repr, clash))}, which the plot varies (x, by or "
            "panels); leave it out of conditions."
        )

    axes_values = {x: _x_values(data[x], resolution)}
    for column in (by, panels):
        if column is not None:
            axes_values[column] = _few_values(data[column])
    frame = pd.DataFrame(
        list(itertools.product(*axes_values.values())), columns=list(axes_values)
    )

    needed = set(predictors) | set(axes_values) | set(conditions)
    if include_groups:
        needed |= set(group_columns)
    response_columns = _response_columns(fit)
    if kind == "response":
        needed |= response_columns
    new_groups = "error"
    for col in data.columns:
        if col in axes_values or col not in needed:
            continue
        if col in conditions:
            frame[col] = conditions[col]
        elif col in group_columns:
            # a new level, its effects drawn from the fitted normal (brms's
            # sample_new_levels = "gaussian")
            frame[col] = new_level_label(pd.unique(data[col].astype(str)))
            new_groups = "gaussian"
        elif col in response_columns and pd.api.types.is_integer_dtype(data[col]):
            # counts of a binomial response (trials): a whole number, as brms rounds them
            frame[col] = round(float(data[col].mean()))
        else:
            frame[col] = _held_value(data[col])
    frame = frame[[c for c in data.columns if c in frame.columns]]
    for col in frame.columns:
        if isinstance(data[col].dtype, pd.CategoricalDtype) and col not in group_columns:
            frame[col] = pd.Categorical(frame[col], categories=data[col].cat.categories)
    return frame, new_groups


def _predictor_columns(fit: Fit) -> list[str]:
    """Data columns read by the common and group-level terms (not the grouping factors)."""
    import formulae

    spec = fit.design.spec
    names: set[str] = set()
    for text in [spec.common, *(block.expr for block in spec.blocks)]:
        names |= set(formulae.model_description(text).var_names)
    return [str(c) for c in fit.design.data.columns if str(c) in names]


def _response_columns(fit: Fit) -> set[str]:
    """Data columns named on the left of ``~`` (successes, failures, trials)."""
    import re

    from bayesmixed.formula import CbindResponse

    response = fit.design.spec.response
    text = (
        f"{response.successes} {response.failures}"
        if isinstance(response, CbindResponse)
        else str(response)
    )
    tokens = set(re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", text))
    return {str(c) for c in fit.design.data.columns if str(c) in tokens}


def _x_values(values: pd.Series, resolution: int) -> np.ndarray:
    if is_numeric(values):
        return np.linspace(float(values.min()), float(values.max()), resolution)
    return np.asarray(_categories(values), dtype=object)


def _few_values(values: pd.Series) -> list[Any]:
    """Values of a ``by``/``panels`` column: every category, or mean -/+ SD if numeric."""
    if is_numeric(values) and values.nunique() > 5:
        mean, sd = float(values.mean()), float(values.std())
        return [mean - sd, mean, mean + sd]
    return _categories(values)


def _categories(values: pd.Series) -> list[Any]:
    """Categories in the design's order (a categorical's order, else sorted)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna())
        return [c for c in values.cat.categories if c in present]
    return sorted(pd.unique(values.dropna()), key=_sort_key)


def _sort_key(value: Any) -> Any:
    return (0, value, "") if isinstance(value, int | float | np.number) else (1, 0, str(value))


def _held_value(values: pd.Series) -> Any:
    """The mean of a numeric column, else its reference (first) category."""
    if is_numeric(values):
        return float(values.mean())
    return _categories(values)[0]


# -- drawing helpers -----------------------------------------------------------------------------


def _dodge(n: int) -> np.ndarray:
    if n <= 1:
        return np.zeros(1)
    width = min(0.6, 0.15 * n)
    return np.linspace(-width / 2, width / 2, n)


def _format(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:.3g}"
    return str(value)


def _y_label(fit: Fit, kind: str) -> str:
    label = response_label(fit)
    if kind == "linear":
        return f"{label} (linear predictor, {fit.design.common.link_name} link)"
    return label


def _draw_points(
    ax: Any, fit: Fit, x: str, panels: str | None, panel: Any, categories: list[Any]
) -> None:
    from bayesmixed.plots._common import observed_response

    data = fit.design.data.reset_index(drop=True)
    y = observed_response(fit)
    keep = np.ones(len(data), dtype=bool)
    if panels is not None and not is_numeric(data[panels]):
        keep = (data[panels] == panel).to_numpy()
    xs = data.loc[keep, x]
    xs = xs.to_numpy(float) if categories == [] else np.array([categories.index(v) for v in xs])
    ax.scatter(xs, y[keep], s=10, color="0.45", alpha=0.6, zorder=0)
