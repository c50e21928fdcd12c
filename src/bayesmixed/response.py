"""Counts of binomial-like responses: ``cbind(successes, failures)`` and ``p(successes, trials)``.

The one place that reads successes and trials from a data frame: the design (fitting), the
input checks, the predictions (trials of new rows) and the plots (proportions) all call
:func:`evaluate_count` and :func:`trials`.

Examples
--------
>>> import pandas as pd
>>> from bayesmixed.formula import parse_formula
>>> from bayesmixed.response import trials
>>> spec = parse_formula("cbind(k, n - k) ~ 1 + (1 | g)")
>>> trials(pd.DataFrame({"k": [1, 2], "n": [5, 5]}), spec.response).tolist()
[5, 5]
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bayesmixed.errors import BayesMixedError, DataError
from bayesmixed.formula import CbindResponse, _split_top

__all__ = [
    "TRIALS_FAMILIES",
    "evaluate_count",
    "p_arguments",
    "trials",
    "trials_expressions",
]

#: Bambi families whose likelihood needs the number of trials.
TRIALS_FAMILIES = frozenset({"binomial", "beta_binomial", "zero_inflated_binomial"})


def p_arguments(response: str | CbindResponse) -> tuple[str, str] | None:
    """``(successes, trials)`` of a response written ``p(successes, trials)``, else None."""
    if isinstance(response, CbindResponse):
        return None
    match = re.fullmatch(r"\s*p\s*\((.*)\)\s*", response)
    if not match:
        return None
    args = [a.strip() for a in _split_top(match.group(1), ",")]
    if len(args) != 2 or not all(args):
        return None
    return args[0], args[1]


def trials_expressions(
    response: str | CbindResponse, *, error: type[BayesMixedError] = DataError
) -> list[str]:
    """Expressions whose sum is the number of trials of a binomial-like response.

    Raises
    ------
    BayesMixedError
        ``error`` when the response is neither ``cbind(...)`` nor ``p(...)``.
    """
    if isinstance(response, CbindResponse):
        return [response.successes, response.failures]
    args = p_arguments(response)
    if args is None:
        raise error(
            f"Cannot tell the number of trials from the response {response!r}; write it as "
            "cbind(successes, failures) or p(successes, trials)."
        )
    return [args[1]]


def evaluate_count(
    frame: pd.DataFrame,
    expr: str,
    *,
    error: type[BayesMixedError] = DataError,
    where: str = "the data",
) -> np.ndarray:
    """Whole-number counts of a column or expression (``"n - k"``) of ``frame``.

    Parameters
    ----------
    frame : pandas.DataFrame
        Not modified.
    expr : str
        A column name or an expression ``pandas.DataFrame.eval`` understands.
    error : type
        Exception class to raise (``DataError`` when fitting, ``PredictionError`` for new
        data).
    where : str
        What ``frame`` is, for the messages.

    Returns
    -------
    numpy.ndarray
        ``int64`` counts (may be negative: callers say what negative values mean).
    """
    if expr in frame.columns:
        values = frame[expr]
    else:
        try:
            values = frame.eval(expr)
        except Exception as err:
            raise error(
                f"Cannot evaluate the count {expr!r} on {where}: {type(err).__name__}: {err}"
            ) from err
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        dtype = getattr(values, "dtype", type(values).__name__)
        raise error(f"The count {expr!r} must hold numeric counts in {where}, got {dtype}.")
    arr = np.asarray(values, dtype=float)
    if np.any(~np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise error(f"The count {expr!r} must hold whole-number counts in {where}.")
    return arr.astype(np.int64)


def trials(
    frame: pd.DataFrame,
    response: str | CbindResponse,
    *,
    error: type[BayesMixedError] = DataError,
    where: str = "the data",
) -> np.ndarray:
    """Number of trials of every row (successes + failures, or the ``p()`` trials)."""
    total = np.zeros(len(frame), dtype=np.int64)
    for expr in trials_expressions(response, error=error):
        counts = evaluate_count(frame, expr, error=error, where=where)
        if np.any(counts < 0):
            raise error(
                f"{expr!r} must hold non-negative counts in {where} "
                f"({int(np.sum(counts < 0))} rows are negative)."
            )
        total += counts
    return total
