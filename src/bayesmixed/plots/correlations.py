"""Posterior of each group-level correlation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from bayesmixed.errors import FitError
from bayesmixed.plots._common import BACKEND, check_fit, check_prob, hyper_dataset, pc_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmixed.results import Fit

__all__ = ["plot_correlations"]


def plot_correlations(
    fit: Fit,
    *,
    group: str | None = None,
    kind: Literal["kde", "hist", "ecdf"] = "kde",
    ci_prob: float = 0.94,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Marginal posterior of every correlation between group effects, one panel each.

    Panels are titled with the summary's labels (``cor(Intercept,Days|Subject)``), show
    the posterior mean and a ``ci_prob`` equal-tailed interval, span the whole range
    [-1, 1] of the x-axis ("correlation"), and mark 0 with a dashed line. Drawn by
    :func:`arviz_plots.plot_dist`.

    Parameters
    ----------
    fit : Fit
        The result of ``Model.fit()`` with at least one correlated block ``(x | g)``.
    group : str, optional
        Only the correlations of this grouping factor.
    kind : {"kde", "hist", "ecdf"}, default "kde"
        How the marginal posteriors are drawn.
    ci_prob : float, default 0.94
        Mass of the interval drawn under each curve.
    figsize : tuple of float, optional
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One panel per correlation. Nothing is shown or saved.

    Raises
    ------
    bayesmixed.errors.FitError
        If the model (or ``group``) has no correlated group effects.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
    ...                bm.datasets.sleepstudy()).fit(random_seed=1)    # doctest: +SKIP
    >>> fig = bm.plot_correlations(fit)                                # doctest: +SKIP
    """
    import arviz_plots as azp

    from bayesmixed.plots._common import pick_factor

    check_fit(fit)
    ci_prob = check_prob(ci_prob)
    if kind not in ("kde", "hist", "ecdf"):
        raise ValueError(f"kind must be one of 'kde', 'hist', 'ecdf', got {kind!r}.")
    factors = fit.design.factors if group is None else [pick_factor(fit, group)]
    suffixes = tuple(f"|{fac.label})" for fac in factors)
    ds = hyper_dataset(fit)
    names = [v for v in ds.data_vars if v.startswith("cor(") and v.endswith(suffixes)]
    if not names:
        where = f" of {group!r}" if group is not None else ""
        raise FitError(
            f"The model {fit.model.formula!r} has no correlated group effects{where}; "
            "correlations come from blocks such as (1 + x | g)."
        )
    ncols = min(3, len(names))
    nrows = -(-len(names) // ncols)
    if figsize is None:
        figsize = (4.0 * ncols, 3.0 * nrows)
    pc = azp.plot_dist(
        ds[names],
        kind=kind,
        ci_kind="eti",
        ci_prob=ci_prob,
        point_estimate="mean",
        backend=BACKEND,
        col_wrap=ncols,
        figure_kwargs={"figsize": figsize},
    )
    for name, ax in pc.viz["plot"].items():
        ax = ax.item()
        ax.axvline(0.0, color="0.5", linestyle="--", linewidth=1, zorder=0)
        ax.set_xlim(-1, 1)
        ax.set_xticks([-1, -0.5, 0, 0.5, 1])
        ax.set_title(name)
        ax.set_xlabel("correlation")
    fig = pc_figure(pc)
    fig.set_layout_engine("constrained")
    return fig
