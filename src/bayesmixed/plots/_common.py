"""Helpers shared by the plots: brms-labelled draws, factor lookup, grids, figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmixed.errors import DataError, FitError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmixed.design import FactorDesign
    from bayesmixed.results import Fit


BACKEND = "matplotlib"


def check_fit(fit: Any) -> None:
    """Raise a clear error when ``fit`` is not a :class:`~bayesmixed.Fit`."""
    from bayesmixed.results import Fit

    if not isinstance(fit, Fit):
        raise TypeError(
            f"Plots take the result of Model.fit() first, got {type(fit).__name__}; "
            "call bm.Model(formula, data).fit() and pass the fit."
        )


def check_prob(prob: float, name: str = "ci_prob") -> float:
    """Validate a probability mass strictly between 0 and 1."""
    prob = float(prob)
    if not 0 < prob < 1:
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {prob!r}.")
    return prob


def interval_quantiles(prob: float) -> tuple[float, float]:
    """Lower and upper quantile of an equal-tailed interval of mass ``prob``."""
    return (1 - prob) / 2, 1 - (1 - prob) / 2


def hyper_dataset(fit: Fit, var_names: str | Sequence[str] | None = None) -> xr.Dataset:
    """Hyper-parameter draws as a Dataset whose variables carry the summary's labels.

    ``var_names`` selects labels of :meth:`Fit.summary` (``"sd(Days|Subject)"``,
    ``"cor(Intercept,Days|Subject)"``); unknown labels raise :class:`FitError`.
    """
    from bayesmixed.summary import hyper_draws

    draws = hyper_draws(fit.posterior, fit.design)
    if var_names is not None:
        wanted = [var_names] if isinstance(var_names, str) else list(var_names)
        unknown = [v for v in wanted if v not in draws]
        if unknown:
            raise FitError(
                f"Unknown parameter(s) {', '.join(map(repr, unknown))}; choose among the "
                f"rows of fit.summary(): {', '.join(draws)}."
            )
        draws = {v: draws[v] for v in wanted}
    chains, ndraw = next(iter(draws.values())).shape
    coords = {"chain": np.arange(chains), "draw": np.arange(ndraw)}
    return xr.Dataset({k: (("chain", "draw"), v) for k, v in draws.items()}, coords=coords)


def pick_factor(fit: Fit, group: str | None, term: str | None = None) -> FactorDesign:
    """The grouping factor named ``group``, or the only one (having ``term``) if None."""
    factors = fit.design.factors
    if not factors:
        raise FitError(
            f"The model {fit.model.formula!r} has no group terms such as (1 | g); this plot "
            "needs one."
        )
    labels = [f.label for f in factors]
    if group is not None:
        if group not in labels:
            raise FitError(
                f"Unknown grouping factor {group!r}; the model's factors are "
                f"{', '.join(map(repr, labels))}."
            )
        fac = fit.design.factor(group)
        if term is not None and term not in fac.terms:
            raise FitError(
                f"{term!r} does not vary by {group!r}; its group terms are "
                f"{', '.join(map(repr, fac.terms))}."
            )
        return fac
    candidates = [f for f in factors if term is None or term in f.terms]
    if not candidates:
        varying = {f.label: f.terms for f in factors}
        raise FitError(
            f"No grouping factor has a term {term!r}; group terms by factor: {varying}."
        )
    if len(candidates) > 1:
        raise FitError(
            f"Several grouping factors fit ({', '.join(f.label for f in candidates)}); "
            "choose one with group=..."
        )
    return candidates[0]


def pc_figure(pc: Any) -> Figure:
    """The matplotlib figure behind an arviz-plots ``PlotCollection``."""
    return pc.viz["figure"].item()


def check_column(fit: Fit, x: str) -> None:
    """Raise :class:`DataError` unless ``x`` is a column the model used."""
    data = fit.design.data
    if x not in data.columns:
        raise DataError(
            f"x={x!r} is not a column the model uses; choose one of "
            f"{', '.join(map(repr, data.columns))}."
        )


def x_values(values: pd.Series, n: int = 40) -> np.ndarray:
    """Points along ``x``: its distinct values when few (or not numeric), else a grid."""
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return np.asarray(pd.unique(values))
    distinct = np.unique(values.to_numpy())
    if len(distinct) <= n:
        return distinct
    return np.linspace(distinct.min(), distinct.max(), n)


def typical_value(values: pd.Series) -> Any:
    """Mean of a numeric column (rounded for integers, e.g. counts), else the mode."""
    if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return round(float(values.mean()))
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return float(values.mean())
    return values.mode().iloc[0]


def prediction_grid(
    data: pd.DataFrame,
    x: str,
    *,
    x_grid: np.ndarray | None = None,
    conditions: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Rows along ``x`` with every other used column held at a typical value.

    Numeric columns are held at their mean, others at their most frequent value;
    ``conditions`` overrides any of them (as brms's ``conditional_effects``).
    """
    conditions = dict(conditions or {})
    unknown = [c for c in conditions if c not in data.columns]
    if unknown:
        raise DataError(
            f"conditions name column(s) {', '.join(map(repr, unknown))} that the model "
            f"does not use; its columns are {', '.join(map(repr, data.columns))}."
        )
    grid_x = x_values(data[x]) if x_grid is None else np.asarray(x_grid)
    out = {}
    for col in data.columns:
        if col == x:
            out[col] = grid_x
        elif col in conditions:
            out[col] = [conditions[col]] * len(grid_x)
        else:
            out[col] = [typical_value(data[col])] * len(grid_x)
    frame = pd.DataFrame(out)
    for col in data.columns:
        if isinstance(data[col].dtype, pd.CategoricalDtype):
            frame[col] = pd.Categorical(frame[col], categories=data[col].cat.categories)
    return frame


def observed_response(fit: Fit) -> np.ndarray:
    """The response on the scale the mean predictions use (proportions for binomial)."""
    y = np.asarray(fit.design.common.response, dtype=float)
    if y.ndim == 2:  # binomial: successes and trials
        return y[:, 0] / y[:, 1]
    return y


def response_label(fit: Fit, *, proportion: bool = True) -> str:
    """Axis label for the response (``incidence (proportion)`` for ``cbind``).

    With ``proportion=False`` a binomial response is labelled as counts of successes
    (``incidence``), as replicated data sets draw them.
    """
    from bayesmixed.formula import CbindResponse

    response = fit.design.spec.response
    binomial = np.asarray(fit.design.common.response).ndim == 2
    name = response.successes if isinstance(response, CbindResponse) else None
    name = name or fit.design.response_name
    return f"{name} (proportion)" if binomial and proportion else name


def new_level_label(levels: Sequence[str]) -> str:
    """A level label that is not among ``levels`` (``"new"``, ``"new_1"``, ...)."""
    taken = set(map(str, levels))
    label, k = "new", 0
    while label in taken:
        k += 1
        label = f"new_{k}"
    return label


def is_numeric(values: pd.Series) -> bool:
    """Whether a column is drawn on a continuous axis."""
    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def predict_band(
    fit: Fit,
    data: pd.DataFrame,
    *,
    kind: str,
    ci_prob: float,
    include_groups: bool = True,
    new_groups: str = "error",
    random_seed: int | None = None,
) -> pd.DataFrame:
    """Posterior mean and equal-tailed ``ci_prob`` interval of predictions for ``data``.

    Returns a frame with columns ``mean``, ``lower`` and ``upper``, one row per data row.
    """
    lo, hi = interval_quantiles(ci_prob)
    if fit.design.categories is not None and (kind != "linear" or fit.design.n_predictors > 1):
        raise FitError(
            f"A {fit.design.family_name} model predicts a probability per category, not one "
            "number per row: use fit.predict(data, kind='mean') for the category "
            "probabilities (dimension 'category')"
            + (", or kind='linear' for the linear predictor." if fit.design.n_predictors == 1
               else ".")
        )
    pred = fit.predict(
        data,
        kind=kind,
        include_groups=include_groups,
        new_groups=new_groups,
        random_seed=random_seed,
    )
    values = np.asarray(pred.draws.values, dtype=float)
    if kind == "response" and np.asarray(fit.design.common.response).ndim == 2:
        values = values / _trials(fit, data)  # binomial counts -> proportions
    flat = values.reshape(-1, values.shape[-1])
    lower, upper = np.quantile(flat, [lo, hi], axis=0)
    return pd.DataFrame({"mean": flat.mean(axis=0), "lower": lower, "upper": upper})


def _trials(fit: Fit, data: pd.DataFrame) -> np.ndarray:
    """Trials (successes + failures) of a ``cbind`` response in ``data``."""
    from bayesmixed.formula import CbindResponse
    from bayesmixed.response import trials

    response = fit.design.spec.response
    if not isinstance(response, CbindResponse):  # pragma: no cover - p(k, n) responses
        raise DataError(
            "Response draws of this binomial model cannot be turned into proportions; "
            "use kind='mean'."
        )
    counts = trials(data, response)
    return np.where(counts > 0, counts, np.nan)


def draw_band(
    ax: Any,
    xs: np.ndarray,
    band: pd.DataFrame,
    *,
    numeric: bool,
    color: Any = "C0",
    band_color: Any = "0.8",
    band_alpha: float = 0.8,
    label: str | None = None,
    band_label: str | None = None,
    positions: Mapping[Any, float] | None = None,
) -> None:
    """Mean line and shaded interval along a numeric ``x``; points and bars otherwise.

    ``label`` names the mean and ``band_label`` the interval in a legend; along a
    non-numeric ``x`` both are one artist (a point with error bars), named by the two
    labels joined.
    """
    if numeric:
        order = np.argsort(xs, kind="stable")
        x_sorted = np.asarray(xs)[order]
        ax.fill_between(
            x_sorted,
            band["lower"].to_numpy()[order],
            band["upper"].to_numpy()[order],
            color=band_color,
            alpha=band_alpha,
            linewidth=0,
            zorder=1,
            label=band_label,
        )
        ax.plot(x_sorted, band["mean"].to_numpy()[order], color=color, label=label, zorder=3)
    else:
        pos = np.array([positions[v] for v in xs]) if positions else np.arange(len(xs))
        mean = band["mean"].to_numpy()
        err = np.vstack([mean - band["lower"].to_numpy(), band["upper"].to_numpy() - mean])
        joined = ", ".join(s for s in (label, band_label) if s) or None
        ax.errorbar(
            pos, mean, yerr=err, fmt="o", color=color, capsize=4, label=joined, zorder=3
        )


def legend_entries(ax: Any) -> tuple[list[Any], list[str]]:
    """Labelled artists of ``ax`` in reading order: data points, mean, then band."""
    from matplotlib.collections import PathCollection
    from matplotlib.container import ErrorbarContainer
    from matplotlib.lines import Line2D

    def rank(handle: Any) -> int:
        if isinstance(handle, PathCollection):
            return 0
        return 1 if isinstance(handle, (Line2D, ErrorbarContainer)) else 2

    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(handles)), key=lambda i: rank(handles[i]))
    return [handles[i] for i in order], [labels[i] for i in order]


def band_labels(kind: str, ci_prob: float) -> tuple[str, str]:
    """Legend texts of a predictive mean and its band (``kind`` "response" or "mean")."""
    if kind == "response":
        return "posterior predictive mean", f"{ci_prob:.0%} interval of new observations"
    return "posterior mean", f"{ci_prob:.0%} interval of the mean"


def category_positions(values: pd.Series) -> dict[Any, float]:
    """Axis positions of the categories of a non-numeric ``x``, in the data's order."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = list(values.cat.categories)
    else:
        cats = list(pd.unique(values))
    return {c: float(i) for i, c in enumerate(cats)}
