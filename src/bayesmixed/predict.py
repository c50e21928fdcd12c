"""Posterior predictions: observed rows, new data, new groups; log-likelihood and LOO.

This is the last stage of the pipeline (results -> predictions). Everything reads the fit's
posterior and design and returns new objects; the fit is never changed.

* :func:`predict` gives draws of the linear predictor (``kind="linear"``), of the family's
  mean parameter (``kind="mean"``, brms's ``posterior_epred``) or of new responses
  (``kind="response"``, brms's ``posterior_predict``) for the observed rows or new data;
  ``dpar="sigma"`` gives any other family parameter instead of the mean (brms's ``dpar``),
  per row when it has its own formula (a distributional model).
* Groups not seen in the fit are refused by default; ``new_groups`` picks how to draw their
  effects, following brms's ``sample_new_levels``: ``"gaussian"``, ``"uncertainty"`` or
  ``"old_levels"``.
* :func:`new_group_effects` draws the coefficients of new levels of a factor (the article's
  new participant).
* :func:`posterior_predictive` and :func:`log_likelihood` return a copy of the DataTree with
  the ``posterior_predictive`` or ``log_likelihood`` group added, for ArviZ;
  :func:`loo` and :func:`compare` run ArviZ's PSIS-LOO on them.

Group effects are gathered by level index, never through a dense ``Z`` matrix; families
come from Bambi through :mod:`bayesmixed._bambi`, with the same parameter transforms as the
model itself, so predictions and log-likelihoods match the likelihood that was sampled.

Examples
--------
>>> import pandas as pd
>>> import bayesmixed as bm
>>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
...                bm.datasets.sleepstudy()).fit(random_seed=1)        # doctest: +SKIP
>>> new = pd.DataFrame({"Days": range(10), "Subject": "new"})
>>> pred = fit.predict(new, kind="response", new_groups="gaussian",
...                    random_seed=1)                                  # doctest: +SKIP
>>> pred.summary()                                                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmixed import _bambi
from bayesmixed.design import Design, FactorDesign, Rows
from bayesmixed.errors import FitError, PredictionError
from bayesmixed.layout import Layout
from bayesmixed.response import TRIALS_FAMILIES
from bayesmixed.summary import _qlabel

if TYPE_CHECKING:
    from bayesmixed.results import Fit

__all__ = [
    "KINDS",
    "NEW_GROUPS",
    "Prediction",
    "compare",
    "log_likelihood",
    "loo",
    "new_group_effects",
    "posterior_predictive",
    "predict",
]

KINDS = ("mean", "response", "linear")
NEW_GROUPS = ("error", "gaussian", "uncertainty", "old_levels")

# elements of one (draws x rows) block pushed through the family at a time
_CHUNK = 2_000_000


@dataclass(frozen=True, eq=False)
class Prediction:
    """Posterior draws of predictions, one column per data row.

    Returned by :meth:`bayesmixed.Fit.predict`.

    Attributes
    ----------
    draws : xarray.DataArray
        Dims ``(chain, draw, row)``; the ``row`` coordinate holds the labels of the rows
        predicted: the new data's index, or the fitted data's index labels of the rows used
        (gaps where rows with missing values were dropped are kept; tuples for a
        MultiIndex).
    kind : str
        ``"mean"``, ``"response"`` or ``"linear"``.
    include_groups : bool
        Whether group effects were included.
    new_groups : str
        How effects of unseen levels were drawn.
    index : pandas.Index, optional
        The rows' labels as a pandas index (names and MultiIndex levels kept); the index of
        :meth:`summary`, so ``data.join(pred.summary())`` lines up.

    Examples
    --------
    >>> pred = fit.predict(new, kind="response", new_groups="gaussian")  # doctest: +SKIP
    >>> pred.draws.sizes                                               # doctest: +SKIP
    Frozen({'chain': 4, 'draw': 1000, 'row': 10})
    >>> new.join(pred.summary())                                       # doctest: +SKIP
    """

    draws: xr.DataArray
    kind: str
    include_groups: bool = True
    new_groups: str = "error"
    index: pd.Index | None = None

    def summary(self, quantiles: Sequence[float] = (0.025, 0.5, 0.975)) -> pd.DataFrame:
        """Posterior mean, SD and quantiles of every row.

        Parameters
        ----------
        quantiles : sequence of float
            Probabilities in ``[0, 1]``; columns are labelled ``q2.5``, ``q50``, ...

        Returns
        -------
        pandas.DataFrame
            One row per predicted data row (indexed like the data), columns ``mean``,
            ``sd`` and one per quantile.

        Examples
        --------
        >>> pred.summary(quantiles=(0.05, 0.95)).columns.tolist()   # doctest: +SKIP
        ['mean', 'sd', 'q5', 'q95']
        """
        probs = _check_quantiles(quantiles)
        index = self.index
        if index is None:
            index = pd.Index(self.draws["row"].values, name="row")
        raw = np.asarray(self.draws.values)
        if raw.dtype.kind not in "biuf":  # drawn text categories: how often each was drawn
            flat = raw.reshape(-1, raw.shape[-1])
            levels = pd.unique(flat.ravel())
            return pd.DataFrame({lev: (flat == lev).mean(axis=0) for lev in sorted(levels)},
                                index=index)
        extra = self.draws.dims[3:]  # category probabilities: one row per (row, category)
        if extra:
            index = pd.MultiIndex.from_product(
                [index, self.draws[extra[0]].values],
                names=[*(index.names if index.names != [None] else ["row"]), extra[0]],
            )
        values = raw.astype(float)
        flat = values.reshape(values.shape[0] * values.shape[1], -1)
        out = {"mean": flat.mean(axis=0), "sd": flat.std(axis=0, ddof=1)}
        for q, value in zip(probs, np.quantile(flat, probs, axis=0), strict=True):
            out[_qlabel(q)] = value
        return pd.DataFrame(out, index=index)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}: {v}" for k, v in self.draws.sizes.items())
        groups = "with" if self.include_groups else "without"
        return (
            f"Prediction(kind={self.kind!r}, {groups} group effects, "
            f"new_groups={self.new_groups!r}; draws ({sizes}))"
        )


# -- public functions --------------------------------------------------------------------------


def predict(
    fit: Fit,
    data: pd.DataFrame | None = None,
    *,
    kind: str = "mean",
    include_groups: bool = True,
    new_groups: str = "error",
    random_seed: int | np.random.Generator | None = None,
    dpar: str | None = None,
) -> Prediction:
    """Posterior predictions for the observed rows or new data.

    Parameters
    ----------
    fit : Fit
        A fitted model.
    data : pandas.DataFrame, optional
        New rows with the columns the formula uses (the response is not needed, except the
        trials of a binomial model for ``kind="response"``). ``None`` predicts the rows the
        model was fitted on. Never modified.
    kind : {"mean", "response", "linear"}
        ``"mean"``: the family's mean parameter (``mu``; the success probability ``p`` for
        Bernoulli and binomial models), brms's ``posterior_epred`` except that brms
        multiplies binomial probabilities by the trials. ``"response"``: new observations
        drawn from the likelihood, one per posterior draw (``posterior_predict``).
        ``"linear"``: the linear predictor on the link scale (``posterior_linpred``).
    include_groups : bool, default True
        ``False`` leaves out every group effect: population-level predictions, brms's
        ``re_formula = NA``; grouping columns are then not needed.
    new_groups : {"error", "gaussian", "uncertainty", "old_levels"}
        What to do with levels of a grouping factor that the fit has not seen.
        ``"error"`` raises :class:`~bayesmixed.errors.PredictionError` naming them.
        ``"gaussian"`` draws new effects, per posterior draw, from the fitted multivariate
        normal (``sd_<g>`` and ``cor_<g>``). ``"uncertainty"`` takes, per posterior draw,
        the effects of a randomly chosen existing level. ``"old_levels"`` picks one
        existing level per new level and uses its effects in every draw. Each distinct new
        level gets its own independent draws.
    random_seed : int or numpy.random.Generator, optional
        Seed for new-group effects and response draws; the same seed gives the same draws.
    dpar : str, optional
        A family parameter to predict instead of the mean, named as Bambi names it
        (``"sigma"``, ``"alpha"``, ``"nu"``), as brms's ``dpar`` argument:
        ``kind="mean"`` gives its draws per row (``sigma`` itself), ``kind="linear"`` its
        linear predictor on the link scale (``log(sigma)``; only for a parameter with its
        own formula). A parameter without a formula has the same value in every row.
        ``None`` (default) or the mean parameter's name (``"mu"``) predict the mean.

    Returns
    -------
    Prediction
        ``.draws`` (dims ``chain, draw, row``) and ``.summary()``.

    Raises
    ------
    PredictionError
        For a missing column, missing values, an unseen category of a fixed-effect factor,
        unseen group levels with ``new_groups="error"``, missing trials of a binomial model,
        or invalid options (``dpar`` not a parameter of the family, ``dpar`` with
        ``kind="response"``). Everything is checked before anything is computed.

    Examples
    --------
    >>> import pandas as pd
    >>> new = pd.DataFrame({"Days": range(10), "Subject": "new"})
    >>> pred = fit.predict(new, kind="response", new_groups="gaussian",
    ...                    random_seed=1)                                # doctest: +SKIP
    >>> pred.summary()                                                   # doctest: +SKIP
    >>> fit.predict(new, include_groups=False).summary()                 # doctest: +SKIP

    A distributional model's residual SD by row (``sigma ~ Days``):

    >>> fit.predict(new, dpar="sigma", include_groups=False).summary()   # doctest: +SKIP
    """
    _check_choice("kind", kind, KINDS)
    _check_choice("new_groups", new_groups, NEW_GROUPS)
    if not isinstance(include_groups, bool | np.bool_):
        raise PredictionError(f"include_groups must be True or False, got {include_groups!r}.")
    design = fit.design
    dpar = _check_dpar(design, dpar, kind)
    rng = _rng(random_seed)
    need_trials = kind == "response" and design.needs_trials
    rows = design.evaluate(data, include_groups=bool(include_groups), trials=need_trials)
    unseen = _all_unseen(rows)
    if unseen and new_groups == "error":
        _refuse_unseen(unseen)
    posterior = fit.posterior
    if dpar is None and design.categories is not None:
        eta = _linear_predictor(posterior, design, rows, new_groups, rng)
        return _category_prediction(design, posterior, rows, eta, kind,
                                    bool(include_groups), new_groups, rng)
    if dpar is not None:
        values = _parameter_values(posterior, design, rows, dpar, kind, new_groups, rng)
    else:
        eta = _linear_predictor(posterior, design, rows, new_groups, rng)
        if kind == "linear":
            values = eta
        else:
            graph = _FamilyGraph(design)
            if kind == "mean":
                values = graph.mean(eta)
            else:
                observed = _dummy_observed(design, len(rows.labels), rows.trials)
                values = graph.draw(eta, _aux_draws(posterior, design, rows, new_groups, rng),
                                    observed, rng)
    draws = xr.DataArray(
        values,
        dims=("chain", "draw", "row"),
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            "row": _coordinate(rows.labels),
        },
        name=design.response_name if dpar is None else dpar,
    )
    return Prediction(draws, kind, bool(include_groups), new_groups, _summary_index(rows.labels))


def _check_dpar(design: Design, dpar: Any, kind: str) -> str | None:
    """``None`` for the mean parameter, else the name of the family parameter asked for."""
    if dpar is None or dpar == design.common.parent:
        return None
    names = [*design.common.family_priors, *(p.name for p in design.parameters)]
    if not isinstance(dpar, str) or dpar not in names:
        raise PredictionError(
            f"dpar={dpar!r} is not a parameter of this {design.family_name!r} model; choose "
            f"one of {', '.join(map(repr, [design.common.parent, *names]))}."
        )
    if kind == "response":
        raise PredictionError(
            f"dpar={dpar!r} gives draws of the parameter, not new responses; use "
            "kind='mean' (the parameter) or kind='linear' (its linear predictor)."
        )
    if kind == "linear" and dpar not in [p.name for p in design.parameters]:
        raise PredictionError(
            f"{dpar!r} has no formula in this model, so it has no linear predictor; use "
            f"kind='mean' for its draws, or give it a formula with bm.Formula(..., "
            f"'{dpar} ~ ...')."
        )
    return dpar


def _all_unseen(rows: Rows) -> dict[str, list[str]]:
    """Unseen levels of every factor, the parameter formulas' included."""
    out = dict(rows.unseen)
    for par_rows in rows.parameters.values():
        for label, levels in par_rows.unseen.items():
            out.setdefault(label, levels)
    return out


def _parameter_values(
    posterior: xr.Dataset, design: Design, rows: Rows, name: str, kind: str,
    new_groups: str, rng: np.random.Generator,
) -> np.ndarray:
    """Draws ``(chain, draw, row)`` of a family parameter (``kind="mean"``) or of its
    linear predictor (``kind="linear"``)."""
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    n = len(rows.labels)
    if name not in rows.parameters:  # one value for every row
        values = posterior[design.layout.family[name]].values
        return np.broadcast_to(values[..., None], (chains, draws, n)).copy()
    par = design.parameter(name)
    eta = _parameter_eta(posterior, design, rows.parameters[name], name, new_groups, rng)
    if kind == "linear":
        return eta
    return _inverse_link_values(par.link_name, eta)


def _inverse_link_values(link: str, eta: np.ndarray) -> np.ndarray:
    import pytensor
    import pytensor.tensor as pt

    x = pt.tensor("eta", dtype="float64", shape=(None,) * eta.ndim)
    fn = pytensor.function([x], _bambi.inverse_link(link)(x))
    return np.asarray(fn(eta))
def _category_prediction(
    design: Design,
    posterior: xr.Dataset,
    rows: Rows,
    eta: np.ndarray,
    kind: str,
    include_groups: bool,
    new_groups: str,
    rng: np.random.Generator,
) -> Prediction:
    """Predictions of an ordinal or categorical model: the linear predictor(s), category
    probabilities (dimension ``category``) or drawn categories."""
    from bayesmixed import categories as cat

    cats = design.categories
    coords: dict[str, Any] = {
        "chain": posterior["chain"].values,
        "draw": posterior["draw"].values,
        "row": _coordinate(rows.labels),
    }
    dims: tuple[str, ...] = ("chain", "draw", "row")
    if kind == "linear":
        values = eta
        if eta.ndim == 4:
            dims += ("predictor",)
            coords["predictor"] = cats.predictors
    else:
        probs = _category_probabilities(design, posterior, eta)
        if kind == "mean":
            values = probs
            dims += ("category",)
            coords["category"] = list(cats.levels)
        else:
            values = cats.labels(cat.draw_codes(probs, rng))
    draws = xr.DataArray(values, dims=dims, coords=coords, name=design.response_name)
    return Prediction(draws, kind, include_groups, new_groups, _summary_index(rows.labels))


def _category_probabilities(design: Design, posterior: xr.Dataset, eta: np.ndarray):
    """Draws ``(chain, draw, row, category)`` of the category probabilities."""
    from bayesmixed import categories as cat

    cats = design.categories
    thresholds = None
    if cats.ordinal:
        thresholds = posterior[design.layout.family[cat.THRESHOLD]].values
    return cat.probabilities(np, cats.family, cats.link, eta, thresholds)


def new_group_effects(
    fit: Fit,
    group: str,
    n: int = 1,
    *,
    new_groups: str = "gaussian",
    include_fixed: bool = True,
    random_seed: int | np.random.Generator | None = None,
) -> xr.DataArray:
    """Draws of the coefficients of ``n`` new, unseen levels of a grouping factor.

    Parameters
    ----------
    fit : Fit
        A fitted model.
    group : str
        The factor label (``"Subject"``, ``"batch:cask"``).
    n : int, default 1
        Number of new levels; each gets its own independent draws.
    new_groups : {"gaussian", "uncertainty", "old_levels"}
        How the effects are drawn (see :func:`predict`).
    include_fixed : bool, default True
        Add the fixed effect of each term, as lme4's ``coef()`` does; ``False`` gives the
        group deviations alone, as ``ranef()``.
    random_seed : int or numpy.random.Generator, optional
        The same seed gives the same draws.

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, level, term)``; levels ``new_1``, ``new_2``, ...; terms as in
        ``fit.ranef()[group]`` (``Intercept``, ``Days``).

    Examples
    --------
    The article's new participant, intercept against slope:

    >>> eff = fit.new_group_effects("Subject", random_seed=1)          # doctest: +SKIP
    >>> eff.sel(level="new_1").to_dataset(dim="term")                  # doctest: +SKIP
    >>> import arviz_plots as azp                                      # doctest: +SKIP
    >>> azp.plot_pair(eff.sel(level="new_1").to_dataset(dim="term"))   # doctest: +SKIP
    """
    _check_choice("new_groups", new_groups, NEW_GROUPS[1:])
    design = fit.design
    labels = [fac.label for fac in design.factors]
    if group not in labels:
        raise PredictionError(
            f"The model has no grouping factor {group!r}; its factors: "
            f"{', '.join(map(repr, labels)) or 'none'}."
        )
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise PredictionError(f"n={n!r} must be a positive integer (the number of new levels).")
    rng = _rng(random_seed)
    posterior = fit.posterior
    fac = design.factor(group)
    values = _new_effects(posterior, fac, design.layout, int(n), new_groups, rng)
    if include_fixed:
        beta = _beta_draws(posterior, design)
        columns = design.common.columns
        for k, term in enumerate(fac.terms):
            if term in columns:
                values[..., k] += beta[..., columns.index(term)][..., None]
    return xr.DataArray(
        values,
        dims=("chain", "draw", "level", "term"),
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            "level": [f"new_{i + 1}" for i in range(int(n))],
            "term": list(fac.terms),
        },
        name=f"new_{group}",
    )


def posterior_predictive(
    fit: Fit, *, random_seed: int | np.random.Generator | None = None
) -> xr.DataTree:
    """A copy of the fit's DataTree with a ``posterior_predictive`` group added.

    The group holds one variable named as the observed one (``Reaction``) with dims
    ``(chain, draw, __obs__)``: replicated data for posterior predictive checks.

    Parameters
    ----------
    fit : Fit
        A fitted model (its DataTree is not changed).
    random_seed : int or numpy.random.Generator, optional
        The same seed gives the same draws.

    Returns
    -------
    xarray.DataTree

    Examples
    --------
    >>> import arviz_plots as azp                                      # doctest: +SKIP
    >>> azp.plot_ppc_dist(fit.posterior_predictive(random_seed=1))      # doctest: +SKIP
    """
    pred = predict(fit, None, kind="response", random_seed=random_seed)
    values = pred.draws.values
    cats = fit.design.categories
    if cats is not None:  # category codes, as the observed data hold them
        lookup = {level: i for i, level in enumerate(cats.levels)}
        values = np.vectorize(lookup.__getitem__, otypes=[np.int64])(values)
    return _with_group(fit, "posterior_predictive", values)


def log_likelihood(fit: Fit) -> xr.DataTree:
    """A copy of the fit's DataTree with the pointwise ``log_likelihood`` group added.

    The log-likelihood of every observed row under every posterior draw (group effects of
    the row's own levels included), computed with the model's own likelihood. One variable
    named as the observed one, dims ``(chain, draw, __obs__)``.

    Parameters
    ----------
    fit : Fit
        A fitted model (its DataTree is not changed).

    Returns
    -------
    xarray.DataTree
        Ready for ``arviz.loo`` and ``arviz.compare``.

    Examples
    --------
    >>> tree = fit.log_likelihood()                                   # doctest: +SKIP
    >>> tree["log_likelihood"]["Reaction"].sizes                      # doctest: +SKIP
    """
    design = fit.design
    posterior = fit.posterior
    rows = design.evaluate()
    eta = _linear_predictor(posterior, design, rows, "error", _rng(None))
    if design.categories is not None:
        probs = _category_probabilities(design, posterior, eta)
        codes = design.categories.codes
        picked = np.take_along_axis(probs, codes[None, None, :, None], axis=-1)[..., 0]
        return _with_group(fit, "log_likelihood", np.log(picked))
    graph = _FamilyGraph(design)
    values = graph.logp(eta, _aux_draws(posterior, design, rows),
                        np.asarray(design.common.response))
    return _with_group(fit, "log_likelihood", values)


def loo(fit: Fit, **kwargs: Any) -> Any:
    """PSIS leave-one-out cross-validation (``arviz.loo``) of a fit.

    Parameters
    ----------
    fit : Fit
        A fitted model.
    **kwargs
        Passed on to :func:`arviz.loo` (``pointwise=True``, ...).

    Returns
    -------
    arviz_stats.ELPDData
        ``elpd``, ``se``, ``p``, Pareto k diagnostics.

    Examples
    --------
    >>> fit.loo()                                                      # doctest: +SKIP
    """
    import arviz as az

    return az.loo(log_likelihood(fit), **kwargs)


def compare(fits: Mapping[str, Fit], **kwargs: Any) -> pd.DataFrame:
    """Rank fits of the same data by expected log predictive density (PSIS-LOO).

    Parameters
    ----------
    fits : mapping of str to Fit
        Two or more fits of the same observations, keyed by the names to show.
    **kwargs
        Passed on to :func:`arviz.compare`.

    Returns
    -------
    pandas.DataFrame
        ArviZ's comparison table, best model first (``rank``, ``elpd``, ``p``,
        ``elpd_diff``, ``weight``, ``se``, ``dse``, ...).

    Raises
    ------
    FitError
        If fewer than two fits are given, an entry is not a fit, or the fits were made on
        different observations.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> df = bm.datasets.sleepstudy()
    >>> fixed = bm.Model("Reaction ~ Days", df).fit()                    # doctest: +SKIP
    >>> mixed = bm.Model("Reaction ~ Days + (Days | Subject)", df).fit()  # doctest: +SKIP
    >>> bm.compare({"fixed": fixed, "mixed": mixed})                     # doctest: +SKIP
    """
    import arviz as az

    if not isinstance(fits, Mapping) or len(fits) < 2:
        raise FitError(
            "compare needs a dict of two or more fits, e.g. "
            "bm.compare({'fixed': fit0, 'mixed': fit1})."
        )
    for name, fit in fits.items():
        if not all(hasattr(fit, part) for part in ("idata", "design", "model")):
            raise FitError(f"compare: {name!r} is a {type(fit).__name__}, not a fit.")
    names = list(fits)
    ref = np.asarray(fits[names[0]].design.common.response)
    for name in names[1:]:
        other = np.asarray(fits[name].design.common.response)
        if other.shape != ref.shape or not np.array_equal(other, ref):
            raise FitError(
                f"compare: {name!r} and {names[0]!r} were fitted on different observations "
                f"({other.shape[0]} and {ref.shape[0]} rows, or different responses); LOO "
                "can only compare models of the same data."
            )
    return az.compare({name: log_likelihood(fit) for name, fit in fits.items()}, **kwargs)


# -- draws ---------------------------------------------------------------------------------------


def _beta_draws(posterior: xr.Dataset, design: Design) -> np.ndarray:
    """Common-effect draws ``(chain, draw, p)`` in the order of the design's columns."""
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    parts = [
        posterior[names.var].values.reshape(chains, draws, -1) for names in design.layout.common
    ]
    if not parts:
        return np.zeros((chains, draws, 0))
    return np.concatenate(parts, axis=-1)


def _aux_draws(
    posterior: xr.Dataset, design: Design, rows: Rows | None = None,
    new_groups: str = "error", rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """Draws of each family parameter, ``(chain, draw)`` for one value per draw and
    ``(chain, draw, row)`` for a parameter with its own formula (evaluated on ``rows``,
    the fitted rows by default), in :class:`_FamilyGraph`'s order."""
    out = [posterior[design.layout.family[name]].values for name in design.common.family_priors]
    rng = _rng(None) if rng is None else rng
    if design.parameters and rows is None:
        rows = design.evaluate()
    for par in design.parameters:
        eta = _parameter_eta(posterior, design, rows.parameters[par.name], par.name,
                             new_groups, rng)
        out.append(_inverse_link_values(par.link_name, eta))
    return out


def _parameter_eta(
    posterior: xr.Dataset, design: Design, rows: Rows, name: str, new_groups: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draws ``(chain, draw, row)`` of a family parameter's linear predictor."""
    names = design.layout.parameter(name)
    chains, draws = posterior.sizes["chain"], posterior.sizes["draw"]
    parts = [posterior[n.var].values.reshape(chains, draws, -1) for n in names.common]
    beta = np.concatenate(parts, axis=-1) if parts else np.zeros((chains, draws, 0))
    eta = beta @ rows.X.T if rows.X.shape[1] else np.zeros((chains, draws, len(rows.labels)))
    eta = eta + rows.offset
    by_label = {f.label: f for f in names.factors}
    return _add_groups(eta, posterior, rows, lambda fac: by_label[fac.label], new_groups, rng)


def _linear_predictor(
    posterior: xr.Dataset,
    design: Design,
    rows: Rows,
    new_groups: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draws ``(chain, draw, row)`` of the linear predictor, group effects gathered by index."""
    beta = _beta_draws(posterior, design)
    P = design.n_predictors
    if P > 1:  # categorical: (chain, draw, row, predictor)
        mix = design.predictor_map(rows.X.shape[1])
        eta = np.einsum("cdj,mj,jk->cdmk", beta, rows.X, mix) + rows.offset[:, None]
    elif rows.X.shape[1]:
        eta = beta @ rows.X.T + rows.offset
    else:
        eta = np.zeros((*beta.shape[:2], len(rows.labels))) + rows.offset
    layout = design.layout
    return _add_groups(eta, posterior, rows, lambda fac: layout.factor(fac.label),
                       new_groups, rng, design.predictor_map if P > 1 else None)


def _add_groups(
    eta: np.ndarray, posterior: xr.Dataset, rows: Rows, names_of: Callable[[Any], Any],
    new_groups: str, rng: np.random.Generator,
    predictor_map: Callable[[int], np.ndarray] | None = None,
) -> np.ndarray:
    """``eta`` plus the group effects of ``rows.groups`` (``names_of(factor)``: its names).

    ``predictor_map`` (categorical models, ``eta`` of shape ``(chain, draw, row,
    predictor)``): the predictor of each group column, as ``Design.predictor_map``.
    """
    for group in rows.groups:
        fac, block = group.factor, group.X
        names = names_of(fac)
        effects = posterior[names.r].values
        index = np.asarray(group.index)
        unseen = index < 0
        if unseen.any():
            new = _new_effects(
                posterior, fac, None, len(group.new_levels), new_groups, rng, names=names
            )
            effects = np.concatenate([effects, new], axis=2)
            index = index.copy()
            index[unseen] = len(fac.levels) + group.new_codes[unseen]
        which = None if predictor_map is None else predictor_map(block.shape[1]).argmax(axis=1)
        for k in range(block.shape[1]):
            column = block[:, k]
            if not np.any(column != 0):
                continue
            if which is not None:
                eta[..., which[k]] += effects[:, :, index, k] * column
            else:
                eta = eta + effects[:, :, index, k] * column
    return eta


def _new_effects(
    posterior: xr.Dataset,
    fac: FactorDesign,
    layout: Layout | None,
    n_new: int,
    method: str,
    rng: np.random.Generator,
    *,
    names: Any = None,
) -> np.ndarray:
    """Group deviations ``(chain, draw, n_new, K)`` of new levels, drawn as brms does.

    ``names`` (the factor's :class:`~bayesmixed.layout.FactorNames`) defaults to the main
    formula's factor of ``layout``.
    """
    if names is None:
        names = layout.factor(fac.label)
    effects = posterior[names.r].values
    chains, draws, n_levels, width = effects.shape
    if method == "gaussian":
        sd = posterior[names.sd].values.reshape(chains, draws, width)
        if fac.correlated_blocks:
            cor = posterior[names.cor].values
        else:
            cor = np.broadcast_to(np.eye(width), (chains, draws, width, width))
        root = _matrix_root(cor)
        z = rng.standard_normal((chains, draws, n_new, width))
        return np.einsum("cdmk,cdjk->cdmj", z, root) * sd[:, :, None, :]
    if method == "uncertainty":
        pick = rng.integers(n_levels, size=(chains, draws, n_new))
        return np.take_along_axis(effects, pick[..., None], axis=2)
    if method == "old_levels":
        pick = rng.integers(n_levels, size=n_new)
        return effects[:, :, pick, :].copy()
    raise PredictionError(  # pragma: no cover - validated by the callers
        f"new_groups={method!r} cannot draw new levels; use 'gaussian', 'uncertainty' or "
        "'old_levels'."
    )


def _matrix_root(cor: np.ndarray) -> np.ndarray:
    """Batched ``A`` with ``A @ A.T == cor``: Cholesky, or eigen-root if not quite PD."""
    try:
        return np.linalg.cholesky(cor)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(cor)
        return vecs * np.sqrt(np.clip(vals, 0, None))[..., None, :]


class _FamilyGraph:
    """The model's likelihood as compiled PyTensor functions of ``eta`` and family draws.

    Built like :func:`bayesmixed.build.build_pymc_model` builds the likelihood (Bambi's
    inverse link, ``transform_backend_kwargs`` and distribution), with symbolic inputs:
    ``eta`` (draws x rows), one vector per family parameter (draws,) and the observed data.
    """

    def __init__(self, design: Design) -> None:
        import pytensor.tensor as pt

        common = design.common
        family = common.family
        response = np.asarray(common.response)
        if response.ndim > 1 and design.family_name not in TRIALS_FAMILIES:
            raise PredictionError(
                f"Predictions for the {design.family_name!r} family (a multi-column response) "
                "are not supported."
            )
        self.aux_names = [*common.family_priors, *(p.name for p in design.parameters)]
        self.eta = pt.matrix("eta", dtype="float64")
        # (draws,) for one value per draw, (draws, rows) for a parameter with a formula
        self.aux = [pt.vector(name, dtype="float64") for name in common.family_priors]
        self.aux += [pt.matrix(p.name, dtype="float64") for p in design.parameters]
        self.observed = pt.tensor(
            "observed", dtype=str(response.dtype), shape=(None,) * response.ndim
        )
        self.mu = _bambi.inverse_link(common.link_name)(self.eta)
        kwargs: dict[str, Any] = {"observed": self.observed, common.parent: self.mu}
        for name, var in zip(self.aux_names, self.aux, strict=True):
            kwargs[name] = var[:, None] if var.ndim == 1 else var
        if hasattr(family, "transform_backend_kwargs"):
            kwargs = family.transform_backend_kwargs(kwargs)
        self.value = kwargs.pop("observed")
        self.dist = _bambi.likelihood_distribution(family).dist(**kwargs)
        self.inputs = [self.eta, *self.aux, self.observed]

    def mean(self, eta: np.ndarray) -> np.ndarray:
        """The family's mean parameter: the inverse link of ``eta``."""
        import pytensor

        fn = pytensor.function([self.eta], self.mu)
        return _chunked(lambda e, *_: fn(e), eta, [], None)

    def logp(self, eta: np.ndarray, aux: list[np.ndarray], observed: np.ndarray) -> np.ndarray:
        """Pointwise log-likelihood of ``observed`` under every draw."""
        import pymc as pm
        import pytensor

        fn = pytensor.function(
            self.inputs, pm.logp(self.dist, self.value), on_unused_input="ignore"
        )
        return _chunked(fn, eta, aux, observed)

    def draw(
        self,
        eta: np.ndarray,
        aux: list[np.ndarray],
        observed: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """One response draw per posterior draw and row."""
        import pymc as pm

        seed = int(rng.integers(2**31 - 1))
        fn = pm.pytensorf.compile(
            self.inputs, self.dist, random_seed=seed, on_unused_input="ignore"
        )
        return _chunked(fn, eta, aux, observed)


def _chunked(
    fn: Callable[..., np.ndarray],
    eta: np.ndarray,
    aux: list[np.ndarray],
    observed: np.ndarray | None,
) -> np.ndarray:
    """Apply ``fn(eta_block, *aux_blocks, observed)`` over blocks of flattened draws."""
    chains, draws, n = eta.shape
    flat = eta.reshape(chains * draws, n)
    aux_flat = [np.asarray(a, dtype=float).reshape(chains * draws, *np.shape(a)[2:])
                for a in aux]
    step = max(1, _CHUNK // max(n, 1))
    blocks = []
    for start in range(0, chains * draws, step):
        stop = start + step
        out = fn(flat[start:stop], *[a[start:stop] for a in aux_flat], observed)
        blocks.append(np.broadcast_to(out, (len(flat[start:stop]), n)))
    return np.concatenate(blocks).reshape(chains, draws, n)


def _dummy_observed(design: Design, n: int, trials: np.ndarray | None) -> np.ndarray:
    """Placeholder data for the likelihood's inputs; only binomial trials are read."""
    response = np.asarray(design.common.response)
    observed = np.zeros((n, *response.shape[1:]), dtype=response.dtype)
    if trials is not None:
        observed[:, 1] = trials
    return observed


def _with_group(fit: Fit, group: str, values: np.ndarray) -> xr.DataTree:
    posterior = fit.idata["posterior"]
    layout = fit.design.layout
    dataset = xr.Dataset(
        {layout.response: (("chain", "draw", layout.obs_dim), values)},
        coords={
            "chain": posterior["chain"].values,
            "draw": posterior["draw"].values,
            layout.obs_dim: np.arange(values.shape[-1]),
        },
    )
    tree = fit.idata.copy()
    tree[group] = xr.DataTree(dataset)
    return tree


# -- rows ---------------------------------------------------------------------------------------


def _refuse_unseen(unseen: dict[str, list[str]]) -> None:
    parts = []
    for label, levels in unseen.items():
        shown = ", ".join(map(repr, levels[:5]))
        more = f" and {len(levels) - 5} more" if len(levels) > 5 else ""
        parts.append(f"level(s) {shown}{more} of the grouping factor {label!r}")
    raise PredictionError(
        f"The new data have {'; '.join(parts)}, not seen in the fit. Pass "
        "new_groups='gaussian' (draw effects from the fitted normal), 'uncertainty' "
        "or 'old_levels' to predict new groups, or include_groups=False for "
        "population-level predictions."
    )


def _coordinate(labels: pd.Index) -> np.ndarray:
    """The ``row`` coordinate: the labels, tuples for a MultiIndex (one flat dimension)."""
    if isinstance(labels, pd.MultiIndex):
        out = np.empty(len(labels), dtype=object)
        out[:] = list(labels)
        return out
    return labels.to_numpy()


def _summary_index(labels: pd.Index) -> pd.Index:
    """The rows' labels as the summary's index (unnamed single indexes are called ``row``)."""
    if isinstance(labels, pd.MultiIndex) or labels.name is not None:
        return labels.copy()
    return labels.rename("row")


# -- validation ----------------------------------------------------------------------------------


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise PredictionError(
            f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}."
        )


def _check_quantiles(quantiles: Sequence[float]) -> list[float]:
    try:
        probs = [float(q) for q in quantiles]
    except (TypeError, ValueError):
        raise PredictionError(
            f"quantiles must be a sequence of probabilities, got {quantiles!r}."
        ) from None
    if not probs or any(not 0 <= q <= 1 for q in probs):
        raise PredictionError(f"quantiles must be probabilities in [0, 1], got {quantiles!r}.")
    return probs


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0
    ):
        raise PredictionError(
            f"random_seed={seed!r} must be a non-negative integer, a numpy Generator or None."
        )
    return np.random.default_rng(seed)
