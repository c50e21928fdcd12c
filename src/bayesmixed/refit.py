"""Refits on new data (brms's ``update(newdata = ...)``) and K-fold cross-validation.

:func:`update` refits a fit's model (formula, family, link, prior overrides, missing-value
rule) on new data with the same sampler settings; default priors that Bambi scales by the
data are recomputed from the new data, exactly as a new :class:`~bayesmixed.Model` on that
data would. A refit runs the engine of the fit (``fit.settings.engine``). A refit of a
model of the same structure (for the exact marginal engine: the same level bucket, see
:func:`bayesmixed.engines.marginal.level_bucket`, whatever the number of rows) reuses the
sampler compiled in this process: only the first fit compiles (see
``benchmarks/refit.py``).

:func:`kfold` is brms's ``kfold``: the rows are split into ``k`` folds (at random and
balanced, or by the levels of a grouping column so that whole groups are held out), the
model is refitted without each fold, and the held-out rows are scored by their log
predictive density, averaged over the posterior draws of the fit that did not see them.

Examples
--------
>>> import bayesmixed as bm
>>> df = bm.datasets.sleepstudy()
>>> fit = bm.Model("Reaction ~ Days + (Days | Subject)", df).fit(random_seed=1)  # doctest: +SKIP
>>> boot = df.sample(len(df), replace=True, random_state=2)
>>> refit = fit.update(data=boot, random_seed=2)                    # doctest: +SKIP
>>> cv = fit.kfold(k=10, random_seed=1)                             # doctest: +SKIP
>>> cv.summary()                                                    # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmixed.errors import DataError, FitError, SamplingError

if TYPE_CHECKING:
    from bayesmixed.results import Fit

__all__ = ["KFold", "kfold", "kfold_split", "update"]

# sampler options a refit may change (the others come from the fit)
_OPTIONS = ("draws", "tune", "chains", "sampler", "target_accept", "progressbar", "chain_method")


def update(
    fit: Fit,
    data: pd.DataFrame | None = None,
    *,
    random_seed: int | None = None,
    **options: Any,
) -> Fit:
    """Refit the same model on new data (brms's ``update(fit, newdata = ...)``).

    Parameters
    ----------
    fit : Fit
        A fit; its formula, family, link, prior overrides, ``dropna``, sampler settings
        and engine (``fit.settings.engine``) are reused.
    data : pandas.DataFrame, optional
        The new data (never modified); ``None`` refits the fit's own data.
    random_seed : int, optional
        Seed of the refit (the fit's own seed is not reused unless passed again).
    **options
        Sampler settings to change: ``draws``, ``tune``, ``chains``, ``sampler``,
        ``target_accept``, ``progressbar``, ``chain_method``.

    Returns
    -------
    Fit
        A new fit; ``fit`` is not changed. Equal, draw for draw, to
        ``Model(formula, data, ...).fit(...)`` with the same settings and seed.

    Raises
    ------
    SamplingError
        For an unknown option.

    Examples
    --------
    >>> boot = df.sample(len(df), replace=True, random_state=2)
    >>> refit = fit.update(data=boot, random_seed=2)                  # doctest: +SKIP
    """
    _check_fit(fit)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise SamplingError(
            f"update() cannot change {', '.join(map(repr, unknown))}; it takes the new data, "
            f"random_seed and sampler options ({', '.join(_OPTIONS)}). For another formula, "
            "family or priors build a new bm.Model."
        )
    model = fit.model
    new_model = type(model)(  # the fit's own Model class: no import cycle
        model.formula,
        model.data if data is None else data,
        family=model.family,
        link=model.link,
        priors=model.prior_overrides,
        dropna=model.dropna,
    )
    settings = {name: getattr(fit.settings, name) for name in _OPTIONS}
    if settings["tune"] == _default_tune(fit.settings.engine):
        settings["tune"] = None  # the engine's default again: the refit may run another
    settings.update(options)
    settings["random_seed"] = random_seed
    return new_model.fit(marginalize=_marginalize(fit, settings["sampler"]), **settings)


def _default_tune(engine: str | None) -> int:
    """Warm-up that ``fit(tune=None)`` gives ``engine`` (Gibbs burn-in or NUTS tuning)."""
    from bayesmixed.engines import GIBBS_TUNE, NUTS_TUNE

    return GIBBS_TUNE if engine == "gibbs" else NUTS_TUNE


def _marginalize(fit: Fit, sampler: str) -> bool | str:
    """``marginalize=`` that makes the refit run the engine of ``fit`` (its
    ``settings.engine``, with the same ``engine_reason``).

    The model's structure (family, link, grouping factors, prior families) is the same on
    the new data, so the chooser's answer for it is too: an exact marginal fit insists on
    the marginal engine, a full-model fit that was asked for with ``marginalize=False``
    keeps asking, and an automatic choice is made again (with the same result and reason).
    A refit with another ``sampler`` lets the chooser decide.
    """
    engine = fit.settings.engine or fit.idata["posterior"].attrs.get("engine")
    if engine == "laplace" and sampler == fit.settings.sampler:
        return "laplace"
    if sampler != fit.settings.sampler or engine not in ("marginal", "nuts", "glmm"):
        return "auto"  # gibbs: sampler='gibbs' pins it
    if engine == "marginal":
        return True
    reason = fit.settings.engine_reason or ""
    return False if reason.startswith("marginalize=False") else "auto"


# -- K-fold cross-validation ---------------------------------------------------------------------


@dataclass(frozen=True)
class KFold:
    """Result of :func:`kfold` (brms's ``kfold``).

    Attributes
    ----------
    elpd : float
        Expected log pointwise predictive density, the sum of :attr:`pointwise`
        (``elpd_kfold``).
    se : float
        Its standard error, ``sqrt(n * var(pointwise))``.
    p : float
        Effective number of parameters: the in-sample log pointwise predictive density
        of the full fit minus :attr:`elpd` (``p_kfold``).
    pointwise : pandas.Series
        Log predictive density of each row, computed by the fit that did not see it,
        indexed like the model's data.
    folds : numpy.ndarray
        Fold (1..k) of each row.
    fits : list of Fit
        The fit without each fold (empty with ``save_fits=False``).
    """

    elpd: float
    se: float
    p: float
    pointwise: pd.Series
    folds: np.ndarray
    fits: list[Any] = field(default_factory=list, repr=False)

    @property
    def k(self) -> int:
        """Number of folds."""
        return int(self.folds.max())

    def summary(self) -> pd.DataFrame:
        """brms's table: ``elpd_kfold``, ``p_kfold`` and ``kfoldic`` with their SEs.

        Returns
        -------
        pandas.DataFrame
            Columns ``Estimate`` and ``SE``.
        """
        return pd.DataFrame(
            {"Estimate": [self.elpd, self.p, -2 * self.elpd], "SE": [self.se, np.nan, 2 * self.se]},
            index=pd.Index(["elpd_kfold", "p_kfold", "kfoldic"]),
        )

    def __repr__(self) -> str:
        return (
            f"KFold(k={self.k}, elpd_kfold={self.elpd:.1f} (SE {self.se:.1f}), "
            f"p_kfold={self.p:.1f}, {len(self.fits)} fits kept)"
        )


def kfold_split(
    n: int, k: int, *, groups: np.ndarray | None = None, random_seed: int | None = None
) -> np.ndarray:
    """Fold of each of ``n`` rows, 1..k, as the ``loo`` package splits them.

    Without ``groups``: a random, balanced split (``kfold_split_random``). With
    ``groups``: every level's rows go to the same fold, levels spread over the folds at
    random and as evenly as possible (``kfold_split_grouped``).

    Parameters
    ----------
    n : int
        Number of rows.
    k : int
        Number of folds, at least 2 and at most the number of rows (or groups).
    groups : numpy.ndarray, optional
        Group label of each row.
    random_seed : int, optional
        The same seed gives the same folds.

    Returns
    -------
    numpy.ndarray
        ``n`` integers in ``1..k``; every fold is used.
    """
    rng = np.random.default_rng(random_seed)
    if groups is None:
        if k > n:
            raise DataError(f"k={k} folds need at least {k} rows; the data have {n}.")
        folds = np.empty(n, dtype=np.int64)
        folds[rng.permutation(n)] = np.ceil(np.arange(1, n + 1) / (n / k)).astype(np.int64)
        return np.clip(folds, 1, k)
    codes, uniques = pd.factorize(pd.Series(groups), sort=True)
    if k > len(uniques):
        raise DataError(
            f"k={k} folds need at least {k} groups; the grouping column has {len(uniques)}."
        )
    group_fold = np.empty(len(uniques), dtype=np.int64)
    group_fold[rng.permutation(len(uniques))] = np.arange(len(uniques)) % k + 1
    return group_fold[codes]


def kfold(
    fit: Fit,
    k: int = 10,
    *,
    group: str | None = None,
    folds: np.ndarray | None = None,
    new_groups: str = "uncertainty",
    random_seed: int | None = None,
    save_fits: bool = True,
    **options: Any,
) -> KFold:
    """K-fold cross-validation (brms's ``kfold``).

    Parameters
    ----------
    fit : Fit
        The fit to cross-validate; each fold is refitted with :func:`update`.
    k : int, default 10
        Number of folds.
    group : str, optional
        A column of the data: hold out whole levels (brms's ``folds = "grouped"``), so the
        score is for predicting new groups.
    folds : array of int, optional
        The fold (1..k) of each row of the model's data, instead of a random split.
    new_groups : {"uncertainty", "gaussian", "old_levels"}, default "uncertainty"
        How held-out rows of a group level the refit did not see get their group effects
        (brms's ``sample_new_levels``; its default is ``"uncertainty"``).
    random_seed : int, optional
        Seed of the split and of the refits (the same seed gives the same result).
    save_fits : bool, default True
        Keep the ``k`` fits in :attr:`KFold.fits`.
    **options
        Sampler settings for the refits (``draws``, ``chains``, ...), as in :func:`update`.

    Returns
    -------
    KFold
        ``elpd``, ``se``, ``p``, ``pointwise``, ``folds``, ``fits``, ``summary()``.

    Raises
    ------
    DataError
        For an unknown ``group`` column, too few rows or groups for ``k``, or ``folds``
        of the wrong length.

    Examples
    --------
    >>> cv = fit.kfold(k=10, random_seed=1)                           # doctest: +SKIP
    >>> cv.elpd, cv.se                                                # doctest: +SKIP
    >>> by_subject = fit.kfold(k=6, group="Subject", random_seed=1)   # doctest: +SKIP
    """
    from bayesmixed.predict import NEW_GROUPS, _aux_draws, _FamilyGraph

    _check_fit(fit)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise DataError(f"k={k!r} must be an integer of at least 2 (the number of folds).")
    if new_groups not in NEW_GROUPS[1:]:
        raise DataError(
            f"new_groups must be one of {', '.join(map(repr, NEW_GROUPS[1:]))}, got "
            f"{new_groups!r}."
        )
    design = fit.design
    data = design.data
    n = design.n
    seeds = np.random.SeedSequence(random_seed)
    split_seed, fit_seeds = seeds.spawn(2)
    if folds is not None:
        folds = np.asarray(folds)
        if folds.shape != (n,) or not np.issubdtype(folds.dtype, np.integer):
            raise DataError(
                f"folds must hold one integer per row of the model's data ({n} rows)."
            )
        if set(np.unique(folds)) != set(range(1, k + 1)):
            raise DataError(f"folds must use every fold 1..{k} (k={k}).")
    else:
        groups = None if group is None else _group_labels(fit, group)
        folds = kfold_split(
            n, int(k), groups=groups, random_seed=int(split_seed.generate_state(1)[0])
        )

    response = np.asarray(design.common.response)
    pointwise = np.empty(n)
    fits = []
    refit_seeds = fit_seeds.generate_state(int(k))
    for fold in range(1, int(k) + 1):
        test = folds == fold
        train_fit = update(
            fit, data.loc[~test], random_seed=int(refit_seeds[fold - 1]), **options
        )
        held = data.loc[test]
        if design.categories is not None:
            pointwise[test] = _category_elpd(design, train_fit, held, response[test],
                                             new_groups, int(refit_seeds[fold - 1]), fold)
            if save_fits:
                fits.append(train_fit)
            continue
        eta = train_fit.predict(
            held, kind="linear", new_groups=new_groups, random_seed=int(refit_seeds[fold - 1])
        ).draws.values
        graph = _FamilyGraph(train_fit.design)
        aux = _aux_draws(train_fit.posterior, train_fit.design,  # sigma ~ x: on held-out rows
                         train_fit.design.evaluate(held) if train_fit.design.parameters
                         else None, new_groups,
                         np.random.default_rng(int(refit_seeds[fold - 1])))
        loglik = graph.logp(eta, aux, response[test])
        pointwise[test] = _log_mean_exp(loglik.reshape(-1, loglik.shape[-1]))
        if save_fits:
            fits.append(train_fit)

    full = fit.log_likelihood()["log_likelihood"][design.response_name].values
    lppd = float(np.sum(_log_mean_exp(full.reshape(-1, full.shape[-1]))))
    elpd = float(pointwise.sum())
    se = float(np.sqrt(n * np.var(pointwise, ddof=1)))
    return KFold(
        elpd=elpd,
        se=se,
        p=lppd - elpd,
        pointwise=pd.Series(pointwise, index=data.index, name="elpd_kfold"),
        folds=folds,
        fits=fits,
    )


def _group_labels(fit: Fit, group: str) -> np.ndarray:
    """Labels of ``group`` for the rows the model used (a column of the data, used by the
    model or not)."""
    design = fit.design
    full = fit.model.data
    if group not in full.columns:
        raise DataError(
            f"group={group!r} is not a column of the data; columns: "
            f"{', '.join(map(repr, full.columns))}."
        )
    if group in design.data.columns:
        return design.data[group].astype(str).to_numpy()
    used = [c for c in design.data.columns if c in full.columns]
    kept = full.loc[full[used].notna().all(axis=1), group]
    if len(kept) != design.n or kept.isna().any():
        raise DataError(
            f"group={group!r} has missing values in rows the model used; fill them or pass "
            "folds= with one fold per row."
        )
    return kept.astype(str).to_numpy()


def _category_elpd(design: Any, train_fit: Fit, held: pd.DataFrame, codes: np.ndarray,
                   new_groups: str, seed: int, fold: int) -> np.ndarray:
    """Pointwise elpd of held-out rows of an ordinal or categorical model."""
    probs = train_fit.predict(held, kind="mean", new_groups=new_groups,
                              random_seed=seed).draws.values
    train_levels = list(train_fit.design.categories.levels)
    labels = design.categories.labels(codes)
    missing = sorted({str(v) for v in labels if v not in train_levels})
    if missing:
        raise DataError(
            f"Fold {fold} holds out every row of the response categories "
            f"{', '.join(missing)}, so its training data cannot predict them; use fewer "
            "folds or pass folds= that keep each category in every training set."
        )
    index = np.asarray([train_levels.index(v) for v in labels])
    picked = np.take_along_axis(probs, index[None, None, :, None], axis=-1)[..., 0]
    return _log_mean_exp(np.log(picked).reshape(-1, picked.shape[-1]))


def _log_mean_exp(values: np.ndarray) -> np.ndarray:
    """log(mean(exp(values))) over axis 0, computed stably."""
    top = values.max(axis=0)
    return top + np.log(np.mean(np.exp(values - top), axis=0))


def _check_fit(fit: Any) -> None:
    # a fit is what Model.fit returns; checked by its parts (refit sits after results)
    if not all(hasattr(fit, name) for name in ("model", "idata", "settings")):
        raise FitError(f"Expected a fit from Model.fit(), got {type(fit).__name__}.")
    if getattr(fit, "is_prior", False):
        raise FitError(
            "These are prior draws (Model.sample_prior); refit with model.fit() instead."
        )
