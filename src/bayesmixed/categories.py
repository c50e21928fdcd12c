"""Ordinal and categorical responses: their categories, thresholds and probabilities.

Three families model a response with a few categories, as brms does:

* ``cumulative``: ``P(y <= k) = F(threshold[k] - eta)``, thresholds increasing;
* ``sratio`` (stopping ratio): ``P(y = k | y >= k) = F(threshold[k] - eta)``;
* ``categorical``: ``P(y = k) = softmax(0, eta_2, ..., eta_K)[k]``, one linear predictor
  per category but the first (the reference), each with its own common and group terms.

``F`` is the inverse link (``logit``, ``probit`` or ``cloglog``). The linear predictor of
the ordinal families has no intercept: the thresholds ``Intercept[1]``, ``Intercept[2]``,
... (brms's names) take its place. A categorical model's terms are repeated per
non-reference category and named by it as brms does (``mu2_Intercept``, ``mu2_treat``,
``sd(mu2_Intercept|subject)``); group terms of different categories are independent.

The response is an ordered categorical column or integers (as brms takes): the categories
are the ordered categories present in the data, or the sorted integer values. A
categorical response may also be text or an unordered categorical. This module converts it
to integer codes ``0 .. K-1`` without touching the user's data, and computes the category
probabilities for the model (PyTensor) and for predictions (NumPy) with one function.

Examples
--------
>>> import numpy as np
>>> from bayesmixed.categories import probabilities
>>> p = probabilities(np, "cumulative", "logit", np.zeros(2), np.array([-1.0, 1.0]))
>>> p.shape, bool(np.allclose(p.sum(axis=-1), 1))
((2, 3), True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayesmixed.errors import DataError, FamilyError

__all__ = [
    "CATEGORY_FAMILIES",
    "ORDINAL_FAMILIES",
    "THRESHOLD",
    "THRESHOLD_PRIOR",
    "Categories",
    "expand_columns",
    "probabilities",
    "response_categories",
    "threshold_labels",
]

#: ordinal families: one linear predictor and K - 1 thresholds
ORDINAL_FAMILIES = frozenset({"cumulative", "sratio"})
#: every family whose response is one of a few categories
CATEGORY_FAMILIES = ORDINAL_FAMILIES | {"categorical"}
#: the family parameter holding the thresholds (Bambi's name)
THRESHOLD = "threshold"
#: default prior of each threshold: brms's ``student_t(3, 0, 2.5)`` (increasing for
#: ``cumulative``); Bambi's ``Normal([-2 .. 2], 1)`` pulls thresholds far from zero in
THRESHOLD_PRIOR = {"name": "StudentT", "nu": 3.0, "mu": 0.0, "sigma": 2.5}


@dataclass(frozen=True)
class Categories:
    """The categories of an ordinal or categorical response.

    Attributes
    ----------
    family : str
        ``"cumulative"``, ``"sratio"`` or ``"categorical"``.
    link : str
        Link of the probabilities (``"logit"``, ``"probit"``, ``"cloglog"``; ``"softmax"``
        for ``categorical``).
    levels : tuple
        The categories in order (the response's own values: ``1, 2, 3, 4`` or labels).
    codes : numpy.ndarray
        Category of every row used, ``0 .. K-1``.
    """

    family: str
    link: str
    levels: tuple
    codes: np.ndarray

    @property
    def n_categories(self) -> int:
        """Number of categories ``K``."""
        return len(self.levels)

    @property
    def ordinal(self) -> bool:
        """Whether the family has thresholds (``cumulative``, ``sratio``)."""
        return self.family in ORDINAL_FAMILIES

    @property
    def predictors(self) -> list[str]:
        """Names of the linear predictors: ``[]`` (ordinal), ``["mu2", "mu3", ...]``."""
        if self.ordinal:
            return []
        return [predictor_name(level) for level in self.levels[1:]]

    def labels(self, codes: np.ndarray) -> np.ndarray:
        """The categories of integer codes (an array of the response's values)."""
        levels = np.asarray(self.levels)
        return levels[np.asarray(codes, dtype=np.int64)]


def predictor_name(level: Any) -> str:
    """brms's name of a category's linear predictor: ``mu`` + the category (``mu2``)."""
    text = "".join(ch for ch in str(level) if ch.isalnum() or ch == "_")
    return f"mu{text}"


def threshold_labels(n_categories: int) -> list[str]:
    """Summary rows of the thresholds, as brms: ``Intercept[1]`` .. ``Intercept[K-1]``."""
    return [f"Intercept[{k}]" for k in range(1, n_categories)]


def response_categories(values: pd.Series, label: str, family: str) -> tuple[tuple, np.ndarray]:
    """Check an ordinal or categorical response and return its categories and codes.

    Parameters
    ----------
    values : pandas.Series
        The response column (missing values already dropped); not modified.
    label : str
        The response's name, for the messages.
    family : str
        ``"cumulative"``, ``"sratio"`` or ``"categorical"``.

    Returns
    -------
    levels : tuple
        The categories present, in order.
    codes : numpy.ndarray
        Position of every row's category in ``levels``.

    Raises
    ------
    DataError
        Fewer than two categories; non-integer numbers; text or an unordered categorical
        for an ordinal family (the message shows the conversion to an ordered categorical).
    """
    dtype = values.dtype
    ordinal = family in ORDINAL_FAMILIES
    if isinstance(dtype, pd.CategoricalDtype):
        if ordinal and not dtype.ordered:
            raise DataError(_order_hint(values, label, family, "an unordered categorical"))
        present = set(pd.unique(values.dropna()))
        levels = tuple(c for c in dtype.categories if c in present)
    elif pd.api.types.is_bool_dtype(dtype):
        levels = tuple(sorted(pd.unique(values)))
    elif pd.api.types.is_numeric_dtype(dtype):
        arr = np.asarray(values, dtype=float)
        fractional = arr != np.round(arr)
        if fractional.any():
            raise DataError(
                f"The response {label!r} has non-integer values (e.g. {arr[fractional][0]:g}); "
                f"family {family!r} needs categories: integers (1, 2, 3, ...) or an ordered "
                f"categorical, e.g. pandas.Categorical(df[{label!r}], ordered=True)."
            )
        unique = np.unique(arr)
        as_int = pd.api.types.is_integer_dtype(dtype)
        levels = tuple(int(v) if as_int else float(v) for v in unique)
    else:
        if ordinal:
            raise DataError(_order_hint(values, label, family, "text"))
        unique = [str(v) for v in pd.unique(values)]
        levels = tuple(sorted(unique, key=lambda s: (_natural_key(s), s)))
        values = values.astype(str)
    if len(levels) < 2:
        shown = repr(levels[0]) if levels else "none"
        raise DataError(
            f"The response {label!r} has only one category ({shown}); family {family!r} "
            "needs at least two categories to model."
        )
    lookup = {level: i for i, level in enumerate(levels)}
    keys = values.to_numpy()
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        keys = np.asarray(keys, dtype=float)
        lookup = {float(level): i for i, level in enumerate(levels)}
    codes = np.fromiter((lookup[k] for k in keys), dtype=np.int64, count=len(keys))
    return levels, codes


def _natural_key(label: str) -> tuple:
    """Sort "2" before "10" (numbers inside labels compare as numbers)."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.split(r"([0-9]+)", label) if part)


def _order_hint(values: pd.Series, label: str, family: str, what: str) -> str:
    shown = [str(v) for v in pd.unique(values.astype(str))][:4]
    example = ", ".join(map(repr, shown))
    return (
        f"The response {label!r} holds {what} ({example}{', ...' if len(shown) == 4 else ''}) "
        f"but family {family!r} needs ordered categories, and text has no order. Convert it "
        f"to an ordered categorical, e.g. pandas.Categorical(df[{label!r}], categories=[...], "
        "ordered=True) with the categories from lowest to highest, or use "
        "family='categorical' for unordered categories."
    )


def expand_columns(columns: list[str], predictors: list[str]) -> list[str]:
    """Columns repeated per linear predictor, named as brms (``mu2_Intercept``)."""
    return [f"{p}_{c}" for p in predictors for c in columns]


def predictor_map(n_columns: int, n_predictors: int) -> np.ndarray:
    """``(n_columns * n_predictors, n_predictors)`` 0/1 matrix: each repeated column's
    predictor (columns are repeated predictor after predictor, as :func:`expand_columns`)."""
    return np.kron(np.eye(n_predictors), np.ones((n_columns, 1)))


def check_link(family: str, link: str) -> None:
    """Refuse a link this module cannot compute (the families' links are Bambi's)."""
    if family == "categorical" and link != "softmax":
        raise FamilyError(f"Family 'categorical' has the link 'softmax' only, got {link!r}.")
    if family in ORDINAL_FAMILIES and link not in ("logit", "probit", "cloglog"):
        raise FamilyError(
            f"Family {family!r} takes the links 'logit', 'probit' or 'cloglog', got {link!r}."
        )


def _cdf(xp: Any, link: str, x: Any) -> Any:
    """Inverse link ``F(x)`` with ``xp`` numpy or ``pytensor.tensor``."""
    if link == "logit":
        return 1.0 / (1.0 + xp.exp(-x))
    if link == "probit":
        if xp is np:
            from scipy.special import ndtr

            return ndtr(x)
        return 0.5 * xp.erfc(-x / np.sqrt(2.0))
    if link == "cloglog":
        return 1.0 - xp.exp(-xp.exp(x))
    raise FamilyError(f"Unknown link {link!r} for an ordinal family.")  # pragma: no cover


def probabilities(xp: Any, family: str, link: str, eta: Any, thresholds: Any = None) -> Any:
    """Probability of every category, last axis ``K``.

    Parameters
    ----------
    xp : module
        ``numpy`` (predictions) or ``pytensor.tensor`` (the model's likelihood).
    family : str
        ``"cumulative"``, ``"sratio"`` or ``"categorical"``.
    link : str
        Inverse link of the ordinal families (ignored for ``categorical``: softmax).
    eta : array
        Ordinal: ``(..., n)`` linear predictor. Categorical: ``(..., n, K-1)``, one per
        non-reference category.
    thresholds : array, optional
        Ordinal only: ``(..., K-1)`` thresholds, broadcast against ``eta`` over ``n``.

    Returns
    -------
    array
        ``(..., n, K)`` probabilities summing to one over the last axis.
    """
    # no zeros_like/ones_like: their shapes would be traced when the data are arguments
    if family == "categorical":
        top = xp.maximum(eta.max(axis=-1, keepdims=True), 0.0)
        e = xp.exp(eta - top)
        ref = xp.exp(-top)
        total = ref + e.sum(axis=-1, keepdims=True)
        return xp.concatenate([ref / total, e / total], axis=-1)
    cdf = _cdf(xp, link, thresholds[..., None, :] - eta[..., :, None])
    if family == "cumulative":
        return xp.concatenate(
            [cdf[..., :1], cdf[..., 1:] - cdf[..., :-1], 1.0 - cdf[..., -1:]], axis=-1
        )
    if family == "sratio":  # P(y = k) = F_k * prod_{j<k} (1 - F_j), the last P(y > K-1)
        parts, survive = [cdf[..., :1]], 1.0 - cdf[..., :1]
        for k in range(1, cdf.shape[-1] if xp is np else _static_width(cdf)):
            parts.append(cdf[..., k : k + 1] * survive)
            survive = survive * (1.0 - cdf[..., k : k + 1])
        parts.append(survive)
        return xp.concatenate(parts, axis=-1)
    raise FamilyError(f"Family {family!r} has no categories.")  # pragma: no cover


def _static_width(tensor: Any) -> int:
    """The last dimension of a PyTensor tensor, known when the model is built."""
    width = tensor.type.shape[-1]
    if width is None:
        width = int(tensor.shape[-1].eval())
    return int(width)


def draw_codes(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category code per row from probabilities ``(..., K)`` (inverse CDF)."""
    cum = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[:-1])[..., None]
    return np.minimum((u > cum).sum(axis=-1), probs.shape[-1] - 1)
