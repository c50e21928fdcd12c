"""Posterior predictive check of the response distribution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from bayesmixed.plots._common import BACKEND, check_fit, pc_figure, response_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmixed.results import Fit

__all__ = ["plot_ppc"]


def plot_ppc(
    fit: Fit,
    *,
    kind: Literal["kde", "hist", "ecdf"] = "kde",
    num_samples: int = 50,
    random_seed: int | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Distribution of the observed response against replicated data sets.

    ``num_samples`` data sets are drawn from the posterior predictive distribution (new
    responses for the observed rows, group effects included, by
    :meth:`bayesmixed.Fit.posterior_predictive`) and their distributions drawn over the
    observed one, with the mean of the replicates; a model that reproduces the data has
    the observed curve inside the bundle. The panel is titled by the model (its formula,
    or ``title`` when checks of several models are shown side by side) and its x-axis
    names the response. Drawn by :func:`arviz_plots.plot_ppc_dist`.

    Parameters
    ----------
    fit : Fit
        The result of ``Model.fit()``.
    kind : {"kde", "hist", "ecdf"}, default "kde"
        How the distributions are drawn (``"ecdf"`` or ``"hist"`` suit counts).
    num_samples : int, default 50
        Number of replicated data sets drawn.
    random_seed : int, optional
        Seed of the replicated data and of the choice of draws shown.
    title : str, optional
        Title of the panel, e.g. a name for the model; by default
        ``"Posterior predictive check: <formula>"``.
    figsize : tuple of float, optional
        Figure size in inches.

    Returns
    -------
    matplotlib.figure.Figure
        One panel. Nothing is shown or saved.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
    ...                bm.datasets.sleepstudy()).fit(random_seed=1)    # doctest: +SKIP
    >>> fig = bm.plot_ppc(fit, random_seed=1)                          # doctest: +SKIP
    >>> fig = bm.plot_ppc(fit, title="correlated slopes")              # doctest: +SKIP
    """
    import arviz_plots as azp
    from matplotlib.lines import Line2D

    check_fit(fit)
    if fit.design.categories is not None:
        return _plot_categories(fit, random_seed=random_seed, title=title, figsize=figsize)
    if kind not in ("kde", "hist", "ecdf"):
        raise ValueError(f"kind must be one of 'kde', 'hist', 'ecdf', got {kind!r}.")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}.")
    tree = fit.posterior_predictive(random_seed=random_seed)
    n_draws = tree["posterior"].sizes["chain"] * tree["posterior"].sizes["draw"]
    pc = azp.plot_ppc_dist(
        tree,
        kind=kind,
        num_samples=min(num_samples, n_draws),
        backend=BACKEND,
        figure_kwargs={"figsize": figsize or (6.4, 4.0)},
    )
    fig = pc_figure(pc)
    ax = fig.axes[0]
    ax.set_title(title if title is not None else _model_title(fit), fontsize="medium")
    ax.set_xlabel(response_label(fit, proportion=False))
    ax.legend(
        handles=[
            Line2D([], [], color="C0", alpha=0.5, label="replicated data"),
            Line2D([], [], color="black", label="observed data"),
        ],
        fontsize="small",
        loc="upper right",
    )
    fig.set_layout_engine("constrained")
    return fig


def _plot_categories(fit: Fit, *, random_seed: int | None, title: str | None,
                     figsize: tuple[float, float] | None) -> Figure:
    """Observed category counts (bars) against replicated counts (median, 95% interval)."""
    import matplotlib.pyplot as plt
    import numpy as np

    cats = fit.design.categories
    K = cats.n_categories
    tree = fit.posterior_predictive(random_seed=random_seed)
    codes = np.asarray(tree["posterior_predictive"][fit.design.layout.response].values)
    flat = codes.reshape(-1, codes.shape[-1])
    counts = np.stack([(flat == k).sum(axis=1) for k in range(K)], axis=1)
    observed = np.bincount(cats.codes, minlength=K)
    low, mid, high = np.quantile(counts, [0.025, 0.5, 0.975], axis=0)
    x = np.arange(K)
    fig, ax = plt.subplots(figsize=figsize or (6.4, 4.0))
    ax.bar(x, observed, color="0.8", edgecolor="black", label="observed data")
    ax.errorbar(x, mid, yerr=[mid - low, high - mid], fmt="o", color="C0", capsize=4,
                label="replicated data (median, 95% interval)")
    ax.set_xticks(x, [str(level) for level in cats.levels])
    ax.set_xlabel(response_label(fit, proportion=False))
    ax.set_ylabel("count")
    ax.set_title(title if title is not None else _model_title(fit), fontsize="medium")
    ax.legend(fontsize="small", loc="upper right")
    fig.set_layout_engine("constrained")
    return fig


def _model_title(fit: Fit) -> str:
    """``Posterior predictive check: <formula>``, naming the family unless Gaussian."""
    family = fit.design.family_name
    suffix = "" if family == "gaussian" else f" ({family})"
    return f"Posterior predictive check: {fit.model.formula}{suffix}"
