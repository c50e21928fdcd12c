"""Checks of the user's input that run before PyMC builds a model or JAX samples one.

:mod:`bayesmixed.design` calls these while it builds the design, in this order:

1. :func:`check_family`: the family is known and supported, the link is one of its links;
2. :func:`check_values`: no infinite values in the used columns; the response has the type
   and the support the family needs (counts, 0/1, positive values, ...);
3. :func:`check_group_structure` (warnings only): group terms the data can hardly identify.

:class:`bayesmixed.Model` runs :func:`check_priors` on the priors (defaults with the
user's overrides). Every check raises the error class of its stage
(:class:`~bayesmixed.errors.FamilyError`, :class:`~bayesmixed.errors.DataError`,
:class:`~bayesmixed.errors.PriorError`) with a message that names the column, term or
argument and says what to do. Nothing here modifies the data.

Examples
--------
>>> import pandas as pd
>>> import bayesmixed as bm
>>> data = pd.DataFrame({"y": [-1, 2, 3, 0], "g": ["a", "a", "b", "b"]})
>>> bm.Model("y ~ 1 + (1 | g)", data, family="poisson").design
Traceback (most recent call last):
...
bayesmixed.errors.FamilyError: The response 'y' has negative values (1 rows, smallest -1); ...
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
import sys
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmixed import prior_table as _table
from bayesmixed.categories import CATEGORY_FAMILIES, response_categories
from bayesmixed.errors import (
    BayesMixedError,
    DataError,
    FamilyError,
    IdentifiabilityWarning,
    PriorError,
)
from bayesmixed.formula import CbindResponse, FormulaSpec
from bayesmixed.response import evaluate_count, p_arguments

if TYPE_CHECKING:
    from bayesmixed.design import Design
    from bayesmixed.priors import Prior, PriorSet

__all__ = [
    "UNSUPPORTED_FAMILIES",
    "check_column_types",
    "check_family",
    "check_group_structure",
    "check_priors",
    "check_values",
    "warn_user",
]

#: Bambi families whose response is a vector of counts per row; bayesmixed takes one
#: category per row (``categorical``, ``cumulative``, ``sratio``: bayesmixed.categories).
UNSUPPORTED_FAMILIES = frozenset({"multinomial", "dirichlet_multinomial"})
_COUNT = frozenset(
    {
        "poisson",
        "negativebinomial",
        "zero_inflated_poisson",
        "zero_inflated_negativebinomial",
        "hurdle_poisson",
        "hurdle_negativebinomial",
    }
)
_TRIALS = frozenset({"binomial", "beta_binomial", "zero_inflated_binomial"})
_POSITIVE = frozenset({"gamma", "exponential", "weibull", "wald", "lognormal"})
_NON_NEGATIVE = frozenset({"hurdle_gamma", "hurdle_lognormal"})
_REAL = frozenset({"gaussian", "t", "laplace", "asymmetriclaplace", "exgaussian"})

# distributions on the whole real line: wrong for a standard deviation or a scale (the
# prior table's real-line rows, plus PyMC distributions only the full NUTS model takes)
_REAL_LINE_PRIORS = frozenset(
    {n for n, kind in _table.PRIORS.items() if kind.support == _table.REAL}
    | {"Logistic", "SkewNormal", "SkewStudentT", "Gumbel", "AsymmetricLaplace", "ExGaussian",
       "Moyal"}
)
_POSITIVE_PRIORS = frozenset(
    {n for n, kind in _table.PRIORS.items() if kind.support == _table.POSITIVE}
    | {"Wald", "ChiSquared", "Pareto"}
)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_user(message: str, category: type[Warning]) -> None:
    """Warn with the stack level of the first frame outside bayesmixed (the user's call).

    Frames of bayesmixed and of ``functools`` (lazy ``cached_property`` attributes) are
    skipped, so the warning points at the user's line whichever path led to it.
    """
    level = 2
    frame = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE_DIR)
        or frame.f_code.co_filename == functools.__file__
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


# -- family and link -------------------------------------------------------------------------


def check_family(
    family: Any, link: Any, spec: FormulaSpec
) -> str:
    """Check the family and link arguments; return the family name to use.

    Parameters
    ----------
    family : str or None
        As given to :class:`bayesmixed.Model` (``None``: ``"gaussian"``, or ``"binomial"``
        with a ``cbind`` response).
    link : str, dict or None
        Link of the family's mean parameter.
    spec : FormulaSpec
        The parsed formula (its response decides the default family).

    Raises
    ------
    FamilyError
        Unknown or unsupported family, a link the family does not offer, a ``cbind``
        response with a family other than binomial, or a binomial family without trials.
    """
    from bayesmixed import _bambi

    if family is not None and not isinstance(family, str):
        raise FamilyError(
            "family must be a family name such as 'gaussian' or 'binomial', got "
            f"{type(family).__name__}."
        )
    cbind = isinstance(spec.response, CbindResponse)
    if cbind and family not in (None, "binomial"):
        raise FamilyError(
            f"A cbind(successes, failures) response needs family='binomial', got {family!r}."
        )
    name = family or ("binomial" if cbind else "gaussian")
    names = _bambi.family_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise FamilyError(f"Unknown family {name!r}{hint}; choose one of {', '.join(names)}.")
    if name in UNSUPPORTED_FAMILIES:
        supported = [n for n in names if n not in UNSUPPORTED_FAMILIES]
        raise FamilyError(
            f"The family {name!r} is not supported: its response is a vector of counts per "
            "row; for one category per row use family='categorical' (or 'cumulative' for "
            f"ordered categories). Supported families: {', '.join(supported)}."
        )
    if name in _TRIALS and not cbind and not _is_p_call(spec.response_text):
        raise FamilyError(
            f"The family {name!r} needs successes and trials: write the response as "
            "'cbind(successes, failures) ~ ...' or 'p(successes, trials) ~ ...'; for a 0/1 "
            "response use family='bernoulli'."
        )
    parent, links, default = _bambi.family_links(name)
    if link is None:
        return name
    if isinstance(link, Mapping):
        bad = [k for k in link if not isinstance(k, str) or not isinstance(link[k], str)]
        if bad:
            raise FamilyError(
                f"link must map parameter names to link names, e.g. {{{parent!r}: "
                f"{default!r}}}, got {dict(link)!r}."
            )
        params = _bambi.family_parameters(name)
        unknown = [k for k in link if k not in params]
        if unknown:
            close = difflib.get_close_matches(unknown[0], params, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise FamilyError(
                f"link has key(s) {', '.join(map(repr, unknown))}{hint}, but family {name!r} "
                f"has the parameters {', '.join(map(repr, params))}; key the link by one of "
                f"them, e.g. link={{{parent!r}: {default!r}}}."
            )
        if parent not in link:
            return name
        chosen = link[parent]
    elif isinstance(link, str):
        chosen = link
    else:
        raise FamilyError(
            f"link must be a link name such as {default!r} (or a dict {{{parent!r}: ...}}), "
            f"got {type(link).__name__}."
        )
    if chosen not in links:
        raise FamilyError(
            f"link={chosen!r} is not available for the {parent!r} parameter of family "
            f"{name!r}; choose one of {', '.join(map(repr, links))} (default {default!r})."
        )
    return name


def _is_p_call(text: str) -> bool:
    return re.fullmatch(r"\s*p\s*\(.*\)\s*", text) is not None


# -- column types ----------------------------------------------------------------------------

_DATETIME_KINDS = frozenset(
    {"datetime", "datetime64", "date", "time", "timedelta", "timedelta64", "period"}
)


def check_column_types(
    frame: pd.DataFrame,
    *,
    group_only: set[str] | frozenset[str] = frozenset(),
    error: type[BayesMixedError] = DataError,
    mixed_groups_ok: bool = False,
) -> None:
    """Refuse column types formulae cannot read, before any of it reaches formulae.

    Parameters
    ----------
    frame : pandas.DataFrame
        The used columns (not modified).
    group_only : set of str
        Columns used only as grouping variables: dates are fine there (levels are matched
        by value), mixed types are not.
    error : type
        ``DataError`` when fitting, ``PredictionError`` for new data.
    mixed_groups_ok : bool, default False
        Accept mixed types in grouping-only columns (new data: each value is matched to
        the fitted levels by value).

    Raises
    ------
    BayesMixedError
        ``error`` naming the column, its dtype and the conversion to make: for dates, times
        and durations, and for object columns mixing types (numbers and text).
    """
    for column in frame.columns:
        values = frame[column]
        dtype = values.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            continue
        if pd.api.types.is_object_dtype(dtype):
            kind = pd.api.types.infer_dtype(values, skipna=True)
        elif isinstance(dtype, pd.PeriodDtype):
            kind = "period"
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            kind = "datetime64"
        elif pd.api.types.is_timedelta64_dtype(dtype):
            kind = "timedelta64"
        else:
            continue
        if kind in _DATETIME_KINDS and column not in group_only:
            if "timedelta" in kind:
                fix = f"df[{column!r}].dt.total_seconds() / 86400 (days)"
            else:
                fix = (
                    f"(df[{column!r}] - df[{column!r}].min()).dt.days (days since the "
                    "first date)"
                )
            raise error(
                f"Column {column!r} holds dates or times (dtype {dtype}, {kind}), which a "
                f"formula cannot use as a predictor; convert it to numbers first, e.g. {fix}."
            )
        if kind in ("mixed", "mixed-integer") and not (mixed_groups_ok and column in group_only):
            types = sorted({type(v).__name__ for v in values.dropna()})
            raise error(
                f"Column {column!r} (dtype {dtype}) mixes values of types "
                f"{', '.join(types)}; convert it to one type first, e.g. "
                f"df[{column!r}].astype(str) for labels or pandas.to_numeric(df[{column!r}]) "
                "for numbers."
            )


# -- values ----------------------------------------------------------------------------------


def check_values(frame: pd.DataFrame, spec: FormulaSpec, family: str) -> None:
    """Check the used columns and the response before Bambi reads them.

    Parameters
    ----------
    frame : pandas.DataFrame
        The used columns, missing values already dropped (the user's index kept).
    spec : FormulaSpec
    family : str
        Family name from :func:`check_family`.

    Raises
    ------
    DataError
        Infinite values in a used column; a text response for a numeric family; a constant
        response for a real-valued family.
    FamilyError
        A response outside the family's support (negative or non-integer counts, values
        other than 0/1 for bernoulli, successes above trials, non-positive values for
        gamma, ...).
    """
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            arr = np.asarray(values, dtype=float)
            bad = np.isinf(arr)
            if bad.any():
                rows = ", ".join(map(str, frame.index[bad][:5]))
                raise DataError(
                    f"Column {column!r} has {int(bad.sum())} infinite value(s) (rows {rows}); "
                    "remove those rows or replace the values before fitting."
                )
    for column in _common_variables(spec, frame):
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) and len(values) > 1 and values.nunique() == 1:
            raise DataError(
                f"Column {column!r} is constant (every value is {values.iloc[0]!r}), so its "
                "effect cannot be told apart from the intercept; drop it from the formula."
            )
    response = spec.response
    if isinstance(response, CbindResponse):
        return  # counts are checked where cbind is evaluated (design.py)
    text = response.strip()
    if family in CATEGORY_FAMILIES:
        column = text[1:-1] if re.fullmatch(r"`[^`]+`", text) else text
        if column not in frame.columns:
            raise DataError(
                f"The response {text!r} of family {family!r} must be a column of the data "
                "(integers or an ordered categorical); compute it as a column first."
            )
        response_categories(frame[column], column, family)  # raises on a bad response
        return
    if text in frame.columns:
        _check_response_column(frame[text], text, family)
        return
    args = p_arguments(text)
    if args is not None and all(_names_columns(a, frame) for a in args):
        succ, trials = (evaluate_count(frame, a, where=f"the response {text!r}") for a in args)
        check_support(np.column_stack([succ, trials]).astype(float), family, text)
        return
    values = _evaluate_response(frame, text)
    if values is not None and (values.ndim == 1 or family in _TRIALS):
        check_support(values, family, text)


def _names_columns(expr: str, frame: pd.DataFrame) -> bool:
    """Whether every name in a count expression (``n``, ``n - k``) is a column."""
    names = re.findall(r"[^\W\d][\w]*", expr)
    return bool(names) and all(name in frame.columns for name in names)


def _evaluate_response(frame: pd.DataFrame, text: str) -> np.ndarray | None:
    """A transformed response (``np.log(y)``, ``y[b]``) as formulae evaluates it, or None."""
    import formulae

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            matrices = formulae.design_matrices(
                f"{text} ~ 1", frame.reset_index(drop=True), na_action="pass"
            )
            values = np.asarray(matrices.response.design_matrix, dtype=float)
    except Exception:  # formulae cannot read it alone: Bambi reports the problem
        return None
    return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values


def _common_variables(spec: FormulaSpec, frame: pd.DataFrame) -> list[str]:
    """Columns named by the common (fixed) part, response excluded."""
    import formulae

    try:
        names = formulae.model_description(spec.common).var_names
    except Exception:  # formulae reports it when the design is built
        return []
    response = spec.response_text.strip()
    return [c for c in frame.columns if c in names and c != response]


def _check_response_column(values: pd.Series, label: str, family: str) -> None:
    numeric = pd.api.types.is_numeric_dtype(values) and not isinstance(
        values.dtype, pd.CategoricalDtype
    )
    if not numeric:
        levels = sorted(map(str, pd.unique(values.astype(str))))
        shown = ", ".join(map(repr, levels[:4])) + (", ..." if len(levels) > 4 else "")
        if family == "bernoulli":
            if len(levels) == 2:
                raise DataError(
                    f"The response {label!r} holds the text levels {shown}; say which one is "
                    f"a success: write '{label}[{levels[1]}] ~ ...' to model "
                    f"P({label} == {levels[1]!r}) (lme4 counts the second level, Bambi the "
                    "first), or use a 0/1 or True/False column."
                )
            raise DataError(
                f"The response {label!r} of a bernoulli model has {len(levels)} levels "
                f"({shown}); it needs exactly two (0/1 or True/False)."
            )
        raise DataError(
            f"The response {label!r} holds text ({shown}), but family {family!r} needs "
            "numbers; convert the column (e.g. pandas.to_numeric) or choose a family that "
            "fits the response."
        )
    check_support(np.asarray(values, dtype=float), family, label)


def check_support(values: np.ndarray, family: str, label: str) -> None:
    """Check that numeric response values lie in the family's support.

    Parameters
    ----------
    values : numpy.ndarray
        The response; two columns ``(successes, trials)`` for binomial-like families.
    family : str
        Bambi family name.
    label : str
        The response as written, for the messages.

    Raises
    ------
    DataError
        Non-finite values, or a constant response for a real-valued family.
    FamilyError
        Values outside the family's support.
    """
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)):
        raise DataError(
            f"The response {label!r} has {int((~np.isfinite(values)).sum())} infinite or "
            "undefined value(s) (a transformation such as np.log of values <= 0?); remove "
            "those rows before fitting."
        )
    where = f"The response {label!r}"
    if family in _COUNT or family in _TRIALS:
        _check_counts(values, family, label)
    elif family == "bernoulli":
        other = ~np.isin(values, (0.0, 1.0))
        if other.any():
            shown = ", ".join(f"{v:g}" for v in np.unique(values[other])[:4])
            raise FamilyError(
                f"{where} has values other than 0 and 1 ({shown}); family 'bernoulli' models "
                "0/1 outcomes: code them as 0/1 or True/False, or use cbind(successes, "
                "failures) with family='binomial' for counts out of trials."
            )
    elif family in _POSITIVE and np.any(values <= 0):
        raise FamilyError(
            f"{where} has values <= 0 ({int((values <= 0).sum())} rows, smallest "
            f"{values.min():g}); family {family!r} needs positive values: use a hurdle family "
            "(e.g. 'hurdle_gamma') for exact zeros, or 'gaussian'."
        )
    elif family in _NON_NEGATIVE and np.any(values < 0):
        raise FamilyError(
            f"{where} has negative values (smallest {values.min():g}); family {family!r} "
            "needs values >= 0."
        )
    elif family == "beta" and np.any((values <= 0) | (values >= 1)):
        raise FamilyError(
            f"{where} has values outside (0, 1) (from {values.min():g} to {values.max():g}); "
            "family 'beta' models proportions strictly between 0 and 1: squeeze them, e.g. "
            "(y * (n - 1) + 0.5) / n."
        )
    elif family == "vonmises" and np.any(np.abs(values) > np.pi):
        raise FamilyError(
            f"{where} has values outside [-pi, pi]; family 'vonmises' models angles in "
            "radians: wrap them, e.g. np.angle(np.exp(1j * y))."
        )
    if family in _REAL and values.size and np.ptp(values) == 0:
        raise DataError(
            f"{where} is constant (every value is {values.flat[0]:g}): there is nothing to "
            "model."
        )


def _check_counts(values: np.ndarray, family: str, label: str) -> None:
    where = f"The response {label!r}"
    if values.ndim == 2:
        succ, trials = values[:, 0], values[:, 1]
        for arr, what in ((succ, "successes"), (trials, "trials")):
            if np.any(arr != np.round(arr)):
                raise FamilyError(
                    f"{where} has non-integer {what}; family {family!r} needs whole counts."
                )
            if np.any(arr < 0):
                raise FamilyError(f"{where} has negative {what}; counts must be >= 0.")
        above = succ > trials
        if above.any():
            raise FamilyError(
                f"{where} has more successes than trials in {int(above.sum())} rows; write "
                "p(successes, trials) with trials >= successes."
            )
        return
    negative = values < 0
    if negative.any():
        raise FamilyError(
            f"{where} has negative values ({int(negative.sum())} rows, smallest "
            f"{values.min():g}); family {family!r} models counts 0, 1, 2, ...: use "
            "family='gaussian' (or 't') for real-valued responses."
        )
    fractional = values != np.round(values)
    if fractional.any():
        example = values[fractional][0]
        raise FamilyError(
            f"{where} has non-integer values ({int(fractional.sum())} rows, e.g. "
            f"{example:g}); family {family!r} models whole counts: round them if they are "
            "counts, or use family='gamma' or 'gaussian' for continuous values."
        )


# -- group structure -------------------------------------------------------------------------


def check_group_structure(design: Design) -> None:
    """Warn about group terms the data can hardly identify (lme4 refuses several of them).

    Emits :class:`~bayesmixed.errors.IdentifiabilityWarning` when

    * a slope does not vary within any level of its factor while the factor has a group
      intercept (``(x | g)`` with ``x`` constant within each ``g``): its deviations are
      indistinguishable from the group intercepts;
    * a factor has no more levels than columns per level (``(C | g)`` with 3 columns and
      3 levels): the covariance cannot be estimated;
    * in a model with a residual scale (``sigma``), a factor has a level per observation, or
      more group effects than observations (lme4: "the random-effects parameters and the
      residual variance are probably unidentifiable").
    """
    n = design.n
    has_sigma = "sigma" in design.common.family_priors
    for fac in design.factors:
        n_levels, n_cols = len(fac.levels), len(fac.terms)
        ones = np.all(fac.X == 1, axis=0)
        if ones.any():
            for k, term in enumerate(fac.terms):
                if ones[k] or not _constant_within(fac.X[:, k], fac.index, n_levels):
                    continue
                warn_user(
                    f"sd({term}|{fac.label}): {term!r} does not vary within any level of "
                    f"{fac.label!r}, so its group deviations cannot be told apart from the "
                    f"group intercepts (not identifiable); drop it from the group term, "
                    f"e.g. (1 | {fac.label}).",
                    IdentifiabilityWarning,
                )
        if n_cols >= n_levels:
            warn_user(
                f"The grouping factor {fac.label!r} has {n_levels} levels but {n_cols} group "
                f"columns ({', '.join(fac.terms)}); a {n_cols} x {n_cols} covariance cannot "
                "be estimated from so few levels (not identifiable): use fewer terms, "
                f"uncorrelated terms (x || {fac.label}), or a fixed effect.",
                IdentifiabilityWarning,
            )
        if has_sigma and n_levels == n:
            warn_user(
                f"The grouping factor {fac.label!r} has a level for every observation "
                f"({n}), so its group effects are confounded with the residual 'sigma' "
                "(lme4 refuses this model); drop the term or group at a coarser level.",
                IdentifiabilityWarning,
            )
        elif has_sigma and n_levels * n_cols >= n:
            warn_user(
                f"The group effects of {fac.label!r} ({n_levels} levels x {n_cols} columns = "
                f"{n_levels * n_cols}) are at least as many as the observations ({n}); they "
                "and the residual 'sigma' are probably not identifiable (lme4 refuses this "
                "model): simplify the group term.",
                IdentifiabilityWarning,
            )


def _constant_within(column: np.ndarray, index: np.ndarray, n_levels: int) -> bool:
    high = np.full(n_levels, -np.inf)
    low = np.full(n_levels, np.inf)
    np.maximum.at(high, index, column)
    np.minimum.at(low, index, column)
    seen = np.isfinite(high)
    return bool(np.all(high[seen] - low[seen] <= 1e-12 * max(1.0, np.abs(column).max())))


# -- priors ----------------------------------------------------------------------------------


def check_priors(priors: PriorSet, design: Design) -> PriorSet:
    """Check every prior before PyMC builds the model; return ``priors`` unchanged.

    Raises
    ------
    PriorError
        An unknown distribution name, a parameter the distribution does not take (or a
        required one missing), parameters whose length does not match the term's columns,
        or a prior on the whole real line for a standard deviation or a positive family
        parameter.
    """
    widths = {t: sl.stop - sl.start for t, sl in design.common.term_slices.items()}
    for par in getattr(design, "parameters", []):  # sigma ~ ...: keys "sigma_Days"
        widths.update({t: sl.stop - sl.start for t, sl in par.term_slices.items()})
    for term, prior in priors.common.items():
        _check_prior(prior, term, width=widths.get(term, 1))
    for label, prior in priors.sd.items():
        _check_prior(prior, label, width=1)
        if prior.name in _REAL_LINE_PRIORS:
            raise PriorError(
                f"{label} is a standard deviation, so its prior must be on positive values, "
                f"e.g. Prior('HalfNormal', sigma=...), got {prior!r}."
            )
    defaults = design.common.family_priors
    for name, prior in priors.family.items():
        _check_prior(prior, name, width=1)
        default = defaults.get(name)
        if (
            default is not None
            and default.name in _POSITIVE_PRIORS
            and prior.name in _REAL_LINE_PRIORS
        ):
            raise PriorError(
                f"The family parameter {name!r} is positive, so its prior must be on positive "
                f"values (the default is {default!r}), got {prior!r}."
            )
    return priors


@functools.cache
def _distributions() -> dict[str, Any]:
    import pymc as pm

    return {
        n: getattr(pm, n)
        for n in dir(pm)
        if inspect.isclass(getattr(pm, n)) and issubclass(getattr(pm, n), pm.Distribution)
    }


def _check_prior(prior: Prior, label: str, *, width: int) -> None:
    if prior.name in _table.PRIORS:
        _table.canonical(prior, label)  # names, required parameters, alternatives
        _check_widths(prior, label, width)
        return
    dists = _distributions()
    dist = dists.get(prior.name)
    if dist is None:
        close = difflib.get_close_matches(prior.name, list(dists), n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise PriorError(
            f"Unknown distribution {prior.name!r} in the prior of {label!r}{hint}; use a "
            "PyMC distribution name such as 'Normal', 'StudentT' or 'HalfNormal'."
        )
    params = inspect.signature(dist.dist).parameters
    named = [
        p for p in params.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    allowed = {p.name for p in named}
    unknown = sorted(set(prior.params) - allowed)
    if unknown:
        raise PriorError(
            f"{prior.name} has no parameter {', '.join(map(repr, unknown))} (prior of "
            f"{label!r}); its parameters are {', '.join(sorted(allowed)) or 'none'}."
        )
    required = [p.name for p in named if p.default is p.empty and p.name not in prior.params]
    if required:
        raise PriorError(
            f"The prior {prior!r} of {label!r} needs the parameter(s) {', '.join(required)}."
        )
    _check_widths(prior, label, width)


def _check_widths(prior: Prior, label: str, width: int) -> None:
    for key, value in prior.params.items():
        size = np.asarray(value).size
        if size not in (1, width):
            raise PriorError(
                f"The prior of {label!r} gives {key} {size} values, but the term has {width} "
                "column(s): give one value, or one per column."
            )
