"""The article's figures, one call each; every function takes the fit first.

Each plot returns a :class:`matplotlib.figure.Figure` and neither shows nor saves it:
call ``fig.savefig(...)`` or let Jupyter display it. Plots that ArviZ already draws
(traces, forests, densities, pair plots, predictive checks) are drawn by
`arviz-plots <https://arviz-plots.readthedocs.io>`_ with the matplotlib backend; the
others are plain matplotlib.

========================  ====================================================
function                  figure
========================  ====================================================
``plot_trace``            trace and density of each hyper-parameter
``plot_fit``              data by group, population-level mean and band
``plot_groups``           one panel per group: data, predictive mean and band
``plot_forest``           per-group coefficients of one term, with intervals
``plot_new_group``        predictive band for an unseen group
``plot_new_group_pairs``  joint posterior of an unseen group's coefficients
``plot_ppc``              posterior predictive check of the response
``plot_correlations``     posterior of each group-level correlation
``plot_conditional``      mean and interval along one predictor, others fixed
========================  ====================================================
"""

from __future__ import annotations

from bayesmixed.plots.conditional import conditional_effects, plot_conditional
from bayesmixed.plots.correlations import plot_correlations
from bayesmixed.plots.fitted import plot_fit
from bayesmixed.plots.forest import plot_forest
from bayesmixed.plots.groups import plot_groups
from bayesmixed.plots.new_group import plot_new_group, plot_new_group_pairs
from bayesmixed.plots.ppc import plot_ppc
from bayesmixed.plots.trace import plot_trace

__all__ = [
    "conditional_effects",
    "plot_conditional",
    "plot_correlations",
    "plot_fit",
    "plot_forest",
    "plot_groups",
    "plot_new_group",
    "plot_new_group_pairs",
    "plot_ppc",
    "plot_trace",
]
