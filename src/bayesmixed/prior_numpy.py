"""NumPy twins of the prior table's densities and transforms (no JAX, nothing to compile).

:mod:`bayesmixed.prior_table` evaluates every prior with numpyro, that is with JAX: right
inside a compiled sampler, but each fresh process pays seconds of tracing and compilation
before the first value. Work done before sampling starts (the marginal engine's posterior
mode and curvature, checks of starting points) is small and runs once per fit, so it uses
these NumPy versions instead: the same normalised densities (numpyro's formulas, written
out) and the same bijections (numpyro's ``biject_to``: identity, ``exp``, scaled sigmoid),
and the inverse of the signed stick-breaking ``CorrCholeskyTransform`` (the transform and
``LKJCholesky``'s density run in NumPy and JAX alike:
:func:`bayesmixed.prior_table.corr_cholesky_entries`).
``tests/test_engines.py`` and ``tests/test_marginal.py`` check every twin against the
table's numpyro version to 1e-10.

A prior of the table without a twin here (:func:`has_twin` is False) is simply evaluated
with JAX by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from bayesmixed import prior_table as table

__all__ = [
    "Bijection",
    "corr_cholesky_inverse",
    "has_twin",
    "log_prob",
    "transform",
]

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_PI = math.log(math.pi)
_LOG_2 = math.log(2.0)


def _lgamma(x: Any) -> np.ndarray:
    """Elementwise ``log Gamma`` of (small) parameter arrays."""
    return np.vectorize(math.lgamma, otypes=[float])(np.asarray(x, dtype=float))


def _normal(x: Any, loc: Any = 0.0, scale: Any = 1.0) -> np.ndarray:
    z = (x - loc) / scale
    return -0.5 * z * z - np.log(scale) - 0.5 * _LOG_2PI


def _student(x: Any, df: Any, loc: Any = 0.0, scale: Any = 1.0) -> np.ndarray:
    z = (x - loc) / scale
    return (_lgamma(0.5 * (df + 1.0)) - _lgamma(0.5 * df) - 0.5 * np.log(df) - 0.5 * _LOG_PI
            - np.log(scale) - 0.5 * (df + 1.0) * np.log1p(z * z / df))


def _cauchy(x: Any, loc: Any, scale: Any) -> np.ndarray:
    z = (x - loc) / scale
    return -_LOG_PI - np.log(scale) - np.log1p(z * z)


def _laplace(x: Any, loc: Any, scale: Any) -> np.ndarray:
    return -np.log(2.0 * scale) - np.abs(x - loc) / scale


def _flat(x: Any) -> np.ndarray:
    return np.zeros(np.shape(x))


def _half_flat(x: Any) -> np.ndarray:
    return np.where(np.asarray(x) > 0, 0.0, -np.inf)


def _half_normal(x: Any, scale: Any) -> np.ndarray:
    return _LOG_2 + _normal(x, 0.0, scale)


def _half_student(x: Any, df: Any, scale: Any) -> np.ndarray:
    return _LOG_2 + _student(x, df, 0.0, scale)


def _half_cauchy(x: Any, scale: Any) -> np.ndarray:
    return _LOG_2 + _cauchy(x, 0.0, scale)


def _exponential(x: Any, rate: Any) -> np.ndarray:
    return np.log(rate) - rate * x


def _gamma(x: Any, concentration: Any, rate: Any) -> np.ndarray:
    return (concentration * np.log(rate) + (concentration - 1.0) * np.log(x) - rate * x
            - _lgamma(concentration))


def _inverse_gamma(x: Any, concentration: Any, rate: Any) -> np.ndarray:
    return (concentration * np.log(rate) - _lgamma(concentration)
            - (concentration + 1.0) * np.log(x) - rate / x)


def _lognormal(x: Any, loc: Any, scale: Any) -> np.ndarray:
    log_x = np.log(x)
    return _normal(log_x, loc, scale) - log_x


def _weibull(x: Any, scale: Any, concentration: Any) -> np.ndarray:
    return (np.log(concentration / scale) + (concentration - 1.0) * np.log(x / scale)
            - (x / scale) ** concentration)


def _uniform(x: Any, low: Any, high: Any) -> np.ndarray:
    inside = (np.asarray(x) >= low) & (np.asarray(x) <= high)
    return np.where(inside, -np.log(high - low), -np.inf)


#: NumPy log density of each table row, keyword arguments as :func:`table.canonical` gives
_LOG_PROBS: dict[str, Callable[..., np.ndarray]] = {
    "Normal": _normal,
    "StudentT": _student,
    "Cauchy": _cauchy,
    "Laplace": _laplace,
    "Flat": _flat,
    "HalfNormal": _half_normal,
    "HalfStudentT": _half_student,
    "HalfCauchy": _half_cauchy,
    "Exponential": _exponential,
    "Gamma": _gamma,
    "InverseGamma": _inverse_gamma,
    "LogNormal": _lognormal,
    "Lognormal": _lognormal,
    "Weibull": _weibull,
    "HalfFlat": _half_flat,
    "Uniform": _uniform,
}


def has_twin(name: str) -> bool:
    """Whether the table's prior ``name`` has a NumPy density here."""
    return name in _LOG_PROBS and name in table.PRIORS


def log_prob(name: str, params: Mapping[str, Any], x: Any) -> np.ndarray:
    """Normalised log density, elementwise, at constrained ``x`` (as :func:`table.log_prob`).

    Parameters
    ----------
    name : str
        PyMC name of the prior (a row of :data:`bayesmixed.prior_table.PRIORS`).
    params : mapping of str to array_like
        Its canonical (numpyro) parameters, from :func:`bayesmixed.prior_table.canonical`.
    x : array_like
        Points in the support.

    Examples
    --------
    >>> from bayesmixed.prior_numpy import log_prob
    >>> round(float(log_prob("HalfNormal", {"scale": 1.0}, 0.0)), 6)
    -0.225791
    """
    x = np.asarray(x, dtype=float)
    if name in ("Flat", "HalfFlat"):
        return _LOG_PROBS[name](x)
    args = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    return _LOG_PROBS[name](x, **args)


class Bijection:
    """One of ``biject_to``'s maps from the real line onto a prior's support, in NumPy.

    ``kind`` is the table's support: ``"real"`` (identity), ``"positive"`` (``exp``) or
    ``"interval"`` (``low + (high - low) * sigmoid``, with numpyro's clipping of the sigmoid).
    """

    def __init__(self, kind: str, low: Any = 0.0, high: Any = 1.0) -> None:
        self.kind = kind
        self.low = np.asarray(low, dtype=float)
        self.high = np.asarray(high, dtype=float)

    def forward(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Unconstrained ``x`` -> (value, elementwise log |Jacobian|)."""
        x = np.asarray(x, dtype=float)
        if self.kind == table.REAL:
            return x, np.zeros(x.shape)
        if self.kind == table.POSITIVE:
            return np.exp(x), x
        tiny, eps = np.finfo(float).tiny, np.finfo(float).eps
        e = np.exp(-np.abs(x))
        s = np.clip(np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)), tiny, 1.0 - eps)
        width = self.high - self.low
        log_jac = -np.logaddexp(0.0, x) - np.logaddexp(0.0, -x) + np.log(np.abs(width))
        return self.low + width * s, log_jac

    def inverse(self, value: Any) -> np.ndarray:
        """Constrained ``value`` -> unconstrained point."""
        value = np.asarray(value, dtype=float)
        if self.kind == table.REAL:
            return value
        if self.kind == table.POSITIVE:
            return np.log(value)
        p = (value - self.low) / (self.high - self.low)
        return np.log(p) - np.log1p(-p)


def transform(name: str, params: Mapping[str, Any]) -> Bijection:
    """NumPy twin of :func:`bayesmixed.prior_table.transform` for the prior ``name``."""
    kind = table.support(name)
    if kind == table.INTERVAL:
        return Bijection(kind, params["low"], params["high"])
    return Bijection(kind)


def corr_cholesky_inverse(L: Any) -> np.ndarray:
    """Inverse of numpyro's ``CorrCholeskyTransform``: Cholesky factor ``(..., k, k)`` -> reals
    (of :func:`bayesmixed.prior_table.corr_cholesky_entries`)."""
    L = np.asarray(L, dtype=float)
    k = L.shape[-1]
    z1m_cumprod = 1.0 - np.cumsum(L * L, axis=-1)
    shifted = np.concatenate([np.ones((*L.shape[:-1], 1)), z1m_cumprod[..., :-1]], axis=-1)
    rows, cols = np.tril_indices(k, -1)
    return np.arctanh(L[..., rows, cols] / np.sqrt(shifted[..., rows, cols]))
