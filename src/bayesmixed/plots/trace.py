"""Trace of the hyper-parameters: the article's first figure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from bayesmixed.plots._common import BACKEND, check_fit, hyper_dataset, pc_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmixed.results import Fit

__all__ = ["plot_trace"]


def plot_trace(
    fit: Fit,
    *,
    var_names: str | Sequence[str] | None = None,
    kind: Literal["kde", "hist", "ecdf"] = "kde",
    combined: bool = False,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Trace and marginal density of every hyper-parameter, one row each.

    One row per row of :meth:`Fit.summary <bayesmixed.Fit.summary>`: fixed effects, group
    SDs, group correlations and family parameters, labelled as brms does
    (``cor(Intercept,Days|Subject)`` instead of ``cor_Subject[0, 1]``). Left: the
    marginal posterior of each chain; right: the draws of each chain in order. Drawn by
    :func:`arviz_plots.plot_trace_dist`.

    Parameters
    ----------
    fit : Fit
        The result of ``Model.fit()``.
    var_names : str or sequence of str, optional
        Labels of the parameters to draw (rows of ``fit.summary()``); all by default.
    kind : {"kde", "hist", "ecdf"}, default "kde"
        How the marginal posteriors are drawn.
    combined : bool, default False
        Pool the chains in the marginal panels instead of one curve per chain.
    figsize : tuple of float, optional
        Figure size in inches; ArviZ's default otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels per parameter. Nothing is shown or saved.

    Raises
    ------
    bayesmixed.errors.FitError
        If a name in ``var_names`` is not a row of ``fit.summary()``.

    See Also
    --------
    plot_correlations : the posterior of each group correlation, larger.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
    ...                bm.datasets.sleepstudy()).fit(random_seed=1)    # doctest: +SKIP
    >>> fig = bm.plot_trace(fit)                                      # doctest: +SKIP
    >>> fig = bm.plot_trace(fit, var_names=["sd(Days|Subject)",
    ...                                     "cor(Intercept,Days|Subject)"])  # doctest: +SKIP
    >>> fig.savefig("trace.png")                                      # doctest: +SKIP
    """
    import arviz_plots as azp

    check_fit(fit)
    if kind not in ("kde", "hist", "ecdf"):
        raise ValueError(f"kind must be one of 'kde', 'hist', 'ecdf', got {kind!r}.")
    ds = hyper_dataset(fit, var_names)
    if figsize is None:
        figsize = (10.0, 1.0 + 1.7 * len(ds.data_vars))
    pc = azp.plot_trace_dist(
        ds,
        kind=kind,
        combined=combined,
        compact=False,
        backend=BACKEND,
        visuals={"label": False},
        figure_kwargs={"figsize": figsize},
    )
    # the labels as titles over both panels (as ArviZ 0.x did): long brms labels do not fit
    # as y-labels
    rows = list(pc.viz["plot"].items())
    for name, axes in rows:
        for ax in axes.values:
            ax.set_title(name, fontsize="medium")
            ax.set_xlabel("")
    bottom = rows[-1][1]  # only the bottom row names the x-axes
    bottom.sel(column="dist").item().set_xlabel("parameter value")
    bottom.sel(column="trace").item().set_xlabel("draw")
    fig = pc_figure(pc)
    fig.set_layout_engine("constrained")
    return fig
