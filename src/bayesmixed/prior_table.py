"""The one table of prior densities, supports and transforms, shared by every engine.

Each supported PyMC distribution name maps to a :class:`PriorKind`: the parameters PyMC
accepts (with its alternative parametrisations: ``tau`` for ``Normal``/``HalfNormal``/
``LogNormal``, ``lam`` for ``StudentT``/``HalfStudentT``, ``scale`` for ``Exponential``,
``mu``/``sigma`` for ``Gamma``/``InverseGamma``), their defaults, its support, and the
numpyro distribution it is. :func:`canonical` resolves the alternatives once, into
numpyro's keyword arguments; densities (:func:`log_prob`) and transforms to the
unconstrained space (:func:`transform`, numpyro's ``biject_to``) come from numpyro, so
the full NUTS model (PyMC), the marginal engine and the Gibbs engine evaluate the same
normalised densities (``tests/test_engines.py`` checks them against PyMC to 1e-8).
Validation (:func:`bayesmixed.validate.check_priors`) and diagnostics
(:func:`typical_scale`) read the same table.

Correlation blocks use numpyro's ``LKJCholesky`` density and ``CorrCholeskyTransform``
(Stan's signed stick-breaking of ``tanh`` values): :func:`lkj_cholesky_log_prob`,
:func:`corr_cholesky_transform`, and both written out entry by entry for small blocks
inside compiled samplers, in JAX or NumPy (:func:`corr_cholesky_entries`).

Densities are evaluated with JAX; engines enable float64 first
(:func:`bayesmixed.engines.common.configure_jax`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesmixed.errors import PriorError

__all__ = [
    "INTERVAL",
    "POSITIVE",
    "PRIORS",
    "REAL",
    "SUPPORTED_PRIORS",
    "PriorKind",
    "canonical",
    "corr_cholesky_entries",
    "corr_cholesky_transform",
    "distribution",
    "lkj_cholesky_log_prob",
    "lkj_log_prob",
    "log_prob",
    "support",
    "transform",
    "typical_scale",
]

REAL, POSITIVE, INTERVAL = "real", "positive", "interval"

_REQUIRED = object()  # marks a parameter without a default


@dataclass(frozen=True)
class PriorKind:
    """One row of the table.

    Attributes
    ----------
    name : str
        PyMC's distribution name.
    support : {"real", "positive", "interval"}
        Where the variable lives (``"interval"``: between the ``lower`` and ``upper``
        parameters).
    params : tuple of str
        Every parameter PyMC accepts, alternatives included.
    canon : callable
        ``dict of PyMC parameters -> dict of numpyro keyword arguments`` (floats or arrays);
        raises ``KeyError`` naming a missing parameter, ``ValueError`` for a conflict.
    numpyro : callable or None
        ``**numpyro_kwargs -> numpyro Distribution``; None for the improper flat priors.
    """

    name: str
    support: str
    params: tuple[str, ...]
    canon: Callable[[dict[str, Any]], dict[str, Any]]
    numpyro: Callable[..., Any] | None


def _pick(p: dict[str, Any], name: str, alt: str | None = None,
          convert: Callable[[Any], Any] | None = None, default: Any = _REQUIRED) -> Any:
    """Parameter ``name``, or its alternative ``alt`` converted, or ``default``."""
    if alt is not None and alt in p:
        if name in p:
            raise ValueError(f"give either {name!r} or {alt!r}, not both")
        return convert(np.asarray(p[alt], dtype=float))  # type: ignore[misc]
    if name in p:
        return np.asarray(p[name], dtype=float)
    if default is _REQUIRED:
        raise KeyError(name)
    return np.asarray(default, dtype=float)


def _inv_sqrt(t: Any) -> Any:
    return t ** -0.5


def _canon_normal(p: dict) -> dict:
    return {"loc": _pick(p, "mu", default=0.0),
            "scale": _pick(p, "sigma", "tau", _inv_sqrt, 1.0)}


def _canon_student(p: dict) -> dict:
    return {"df": _pick(p, "nu"), "loc": _pick(p, "mu", default=0.0),
            "scale": _pick(p, "sigma", "lam", _inv_sqrt, 1.0)}


def _canon_cauchy(p: dict) -> dict:
    return {"loc": _pick(p, "alpha"), "scale": _pick(p, "beta")}


def _canon_laplace(p: dict) -> dict:
    return {"loc": _pick(p, "mu"), "scale": _pick(p, "b")}


def _canon_halfnormal(p: dict) -> dict:
    return {"scale": _pick(p, "sigma", "tau", _inv_sqrt, 1.0)}


def _canon_halfstudent(p: dict) -> dict:
    return {"df": _pick(p, "nu", default=1.0),
            "scale": _pick(p, "sigma", "lam", _inv_sqrt, 1.0)}


def _canon_halfcauchy(p: dict) -> dict:
    return {"scale": _pick(p, "beta")}


def _canon_exponential(p: dict) -> dict:
    if "lam" not in p and "scale" not in p:
        raise KeyError("lam")
    return {"rate": _pick(p, "lam", "scale", lambda s: 1.0 / s)}


def _gamma_mu_sigma(p: dict) -> tuple[Any, Any] | None:
    if "mu" not in p and "sigma" not in p:
        return None
    if "alpha" in p or "beta" in p:
        raise ValueError("give either 'alpha' and 'beta', or 'mu' and 'sigma'")
    return _pick(p, "mu"), _pick(p, "sigma")


def _canon_gamma(p: dict) -> dict:
    ms = _gamma_mu_sigma(p)
    if ms is not None:
        mu, sd = ms
        return {"concentration": mu**2 / sd**2, "rate": mu / sd**2}
    return {"concentration": _pick(p, "alpha"), "rate": _pick(p, "beta")}


def _canon_invgamma(p: dict) -> dict:
    ms = _gamma_mu_sigma(p)
    if ms is not None:
        mu, sd = ms
        return {"concentration": mu**2 / sd**2 + 2, "rate": mu * (mu**2 / sd**2 + 1)}
    return {"concentration": _pick(p, "alpha"), "rate": _pick(p, "beta", default=1.0)}


def _canon_lognormal(p: dict) -> dict:
    return {"loc": _pick(p, "mu", default=0.0),
            "scale": _pick(p, "sigma", "tau", _inv_sqrt, 1.0)}


def _canon_weibull(p: dict) -> dict:
    return {"scale": _pick(p, "beta"), "concentration": _pick(p, "alpha")}


def _canon_uniform(p: dict) -> dict:
    return {"low": _pick(p, "lower", default=0.0), "high": _pick(p, "upper", default=1.0)}


def _canon_none(p: dict) -> dict:
    return {}


def _numpyro(name: str) -> Callable[..., Any]:
    def make(**kwargs: Any) -> Any:
        import numpyro.distributions as dist

        return getattr(dist, name)(**kwargs)

    make.__name__ = name
    return make


def _half_student(df: Any, scale: Any) -> Any:
    import numpyro.distributions as dist

    return dist.FoldedDistribution(dist.StudentT(df, 0.0, scale))


def _kinds() -> dict[str, PriorKind]:
    rows = [
        ("Normal", REAL, ("mu", "sigma", "tau"), _canon_normal, _numpyro("Normal")),
        ("StudentT", REAL, ("nu", "mu", "sigma", "lam"), _canon_student, _numpyro("StudentT")),
        ("Cauchy", REAL, ("alpha", "beta"), _canon_cauchy, _numpyro("Cauchy")),
        ("Laplace", REAL, ("mu", "b"), _canon_laplace, _numpyro("Laplace")),
        ("Flat", REAL, (), _canon_none, None),
        ("HalfNormal", POSITIVE, ("sigma", "tau"), _canon_halfnormal, _numpyro("HalfNormal")),
        ("HalfStudentT", POSITIVE, ("nu", "sigma", "lam"), _canon_halfstudent, _half_student),
        ("HalfCauchy", POSITIVE, ("beta",), _canon_halfcauchy, _numpyro("HalfCauchy")),
        ("Exponential", POSITIVE, ("lam", "scale"), _canon_exponential,
         _numpyro("Exponential")),
        ("Gamma", POSITIVE, ("alpha", "beta", "mu", "sigma"), _canon_gamma, _numpyro("Gamma")),
        ("InverseGamma", POSITIVE, ("alpha", "beta", "mu", "sigma"), _canon_invgamma,
         _numpyro("InverseGamma")),
        ("LogNormal", POSITIVE, ("mu", "sigma", "tau"), _canon_lognormal,
         _numpyro("LogNormal")),
        ("Weibull", POSITIVE, ("alpha", "beta"), _canon_weibull, _numpyro("Weibull")),
        ("HalfFlat", POSITIVE, (), _canon_none, None),
        ("Uniform", INTERVAL, ("lower", "upper"), _canon_uniform, _numpyro("Uniform")),
    ]
    table = {name: PriorKind(name, sup, params, canon, make)
             for name, sup, params, canon, make in rows}
    table["Lognormal"] = PriorKind("Lognormal", POSITIVE, ("mu", "sigma", "tau"),
                                   _canon_lognormal, _numpyro("LogNormal"))
    return table


#: every prior every engine understands, by PyMC name
PRIORS: dict[str, PriorKind] = _kinds()

#: PyMC distribution names in :data:`PRIORS` (the full NUTS model takes any PyMC name)
SUPPORTED_PRIORS: tuple[str, ...] = tuple(sorted(PRIORS))


def _kind(name: str) -> PriorKind:
    kind = PRIORS.get(name)
    if kind is None:
        raise PriorError(
            f"The prior {name!r} has no entry in the prior table; supported: "
            f"{', '.join(SUPPORTED_PRIORS)}."
        )
    return kind


def canonical(prior: Any, label: str = "the prior") -> dict[str, np.ndarray]:
    """Resolve a prior's PyMC parametrisation into numpyro's keyword arguments.

    Parameters
    ----------
    prior : Prior
        A :class:`~bayesmixed.priors.Prior` whose name is in :data:`PRIORS`.
    label : str
        What the prior is on (``"sd(Days|Subject)"``), for messages.

    Returns
    -------
    dict of str to numpy.ndarray
        ``Prior("HalfNormal", tau=4)`` -> ``{"scale": 0.5}``; ``Prior("Exponential",
        scale=2)`` -> ``{"rate": 0.5}``.

    Raises
    ------
    PriorError
        An unknown parameter, a missing one, or two alternatives given together.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> from bayesmixed.prior_table import canonical
    >>> {k: float(v) for k, v in canonical(bm.Prior("Normal", mu=1, tau=0.25)).items()}
    {'loc': 1.0, 'scale': 2.0}
    """
    kind = _kind(prior.name)
    unknown = sorted(set(prior.params) - set(kind.params))
    if unknown:
        raise PriorError(
            f"{prior.name} has no parameter {', '.join(map(repr, unknown))} (prior of "
            f"{label!r}); its parameters are {', '.join(kind.params) or 'none'}."
        )
    try:
        return kind.canon(dict(prior.params))
    except KeyError as err:
        raise PriorError(
            f"The prior {prior!r} of {label!r} needs the parameter {err.args[0]!r}."
        ) from None
    except ValueError as err:
        raise PriorError(f"The prior {prior!r} of {label!r}: {err}.") from None


def support(name: str) -> str:
    """``"real"``, ``"positive"`` or ``"interval"`` for a distribution in the table."""
    return _kind(name).support


def distribution(name: str, params: Mapping[str, Any]) -> Any:
    """The numpyro distribution of ``name`` with canonical ``params`` (None if flat)."""
    kind = _kind(name)
    return None if kind.numpyro is None else kind.numpyro(**params)


def log_prob(name: str, params: Mapping[str, Any], x: Any) -> Any:
    """Normalised log density, elementwise, at constrained ``x`` (JAX arrays out).

    The improper ``Flat`` and ``HalfFlat`` have density 1 on their support (as in PyMC).
    """
    import jax.numpy as jnp

    d = distribution(name, params)
    if d is None:
        x = jnp.asarray(x)
        if support(name) == POSITIVE:
            return jnp.where(x > 0, 0.0, -jnp.inf)
        return jnp.zeros_like(x)
    return d.log_prob(x)


def transform(name: str, params: Mapping[str, Any]) -> Any:
    """numpyro's bijection from the real line onto the support (``biject_to``).

    Identity for real support, ``exp`` for positive ones, scaled sigmoid for ``Uniform``:
    the transforms PyMC samples the same priors on.
    """
    from numpyro.distributions import constraints
    from numpyro.distributions.transforms import biject_to

    sup = support(name)
    if sup == REAL:
        return biject_to(constraints.real)
    if sup == POSITIVE:
        return biject_to(constraints.positive)
    return biject_to(constraints.interval(params["low"], params["high"]))


def corr_cholesky_transform() -> Any:
    """numpyro's ``k (k - 1) / 2`` reals -> Cholesky factor of a correlation matrix.

    Its ``log_abs_det_jacobian`` is taken with respect to the factor's strict lower
    triangle, the variables :func:`lkj_cholesky_log_prob` is a density of.
    """
    from numpyro.distributions.transforms import CorrCholeskyTransform

    return CorrCholeskyTransform()


def lkj_cholesky_log_prob(L: Any, eta: Any) -> Any:
    """numpyro's ``LKJCholesky(k, eta)`` log density of Cholesky factors ``L`` (..., k, k)."""
    import numpyro.distributions as dist

    return dist.LKJCholesky(L.shape[-1], concentration=eta).log_prob(L)


def corr_cholesky_entries(x: Any, k: int, eta: Any, xp: Any) -> tuple[list[list[Any]], Any, Any]:
    """numpyro's ``CorrCholeskyTransform`` and ``LKJCholesky`` density, entry by entry.

    The same numbers as :func:`corr_cholesky_transform` and :func:`lkj_cholesky_log_prob`
    (``tests/test_marginal.py`` checks them to 1e-12), written as elementwise operations on
    the factor's entries instead of numpyro's triangular scatter, ``cumsum`` and
    ``cumprod``: inside a compiled sampler these, and their gradients, became many small
    kernels, several times the cost of the rest of a small model's log density (the
    marginal engine's ``y ~ x + (x | g)``: 4.3 -> 0.7 microseconds per gradient, with the
    group terms also written out).

    Parameters
    ----------
    x : array_like
        ``(..., k (k - 1) / 2)`` unconstrained reals, the strict lower triangle row by row.
    k : int
        Size of the correlation matrix.
    eta : array_like
        LKJ shape (a scalar).
    xp : module
        ``numpy`` or ``jax.numpy``.

    Returns
    -------
    rows : list of list
        The Cholesky factor: ``rows[i][j]`` is a ``(...)`` array for ``j < i`` and on the
        diagonal (``rows[0][0]`` is the float ``1.0``), None above it (exactly zero).
    log_jacobian : array
        ``(...)``: log |Jacobian| of ``x ->`` the factor's strict lower triangle.
    log_prob : array
        ``(...)``: ``LKJCholesky(k, eta)`` log density of the factor.
    """
    if xp is np:
        from scipy.special import gammaln
    else:
        from jax.scipy.special import gammaln
    eps = float(xp.finfo(x.dtype).eps)
    t = xp.clip(xp.tanh(x), -1.0 + eps, 1.0 - eps)
    log_jacobian = -2.0 * xp.sum(x + xp.logaddexp(0.0, -2.0 * x) - math.log(2.0), axis=-1)
    rows: list[list[Any]] = [[None] * k for _ in range(k)]
    rows[0][0] = 1.0
    log_prob: Any = 0.0
    pos = 0
    for i in range(1, k):
        remaining: Any = None  # prod of sqrt(1 - t^2) over the row so far
        used: Any = 0.0  # sum of the squared entries so far
        for j in range(i):
            tij = t[..., pos]
            pos += 1
            rows[i][j] = tij if remaining is None else tij * remaining
            s = xp.sqrt(1.0 - tij * tij)
            remaining = s if remaining is None else remaining * s
            if j < i - 1:  # the stick-breaking part of the Jacobian
                used = used + rows[i][j] ** 2
                log_jacobian = log_jacobian + 0.5 * xp.log(1.0 - used)
        rows[i][i] = remaining
        log_prob = log_prob + (2.0 * eta - (3 - k + i)) * xp.log(remaining)
    # normaliser of numpyro's LKJCholesky (multigammaln written out with gammaln)
    dm1 = k - 1
    alpha = eta + 0.5 * dm1
    multigammaln = 0.25 * dm1 * (dm1 - 1) * math.log(math.pi) + sum(
        gammaln(alpha - 0.5 - 0.5 * j) for j in range(dm1))
    normalize = 0.5 * dm1 * math.log(math.pi) + multigammaln - gammaln(alpha) * dm1
    return rows, log_jacobian, log_prob - normalize


def typical_scale(prior: Any) -> float | None:
    """A typical size of a positive prior, or None if it has none (flat, per-column).

    ``HalfNormal``/``HalfStudentT``/``HalfCauchy``: their scale (``tau``/``lam`` resolved);
    ``Exponential``: ``1 / rate``; ``Gamma``/``InverseGamma``/``LogNormal``/``Weibull``:
    the scale of the distribution (mean, or median for the log-normal).
    """
    if prior.name not in PRIORS or support(prior.name) != POSITIVE:
        return None
    try:
        canon = canonical(prior)
    except PriorError:
        return None
    if any(np.size(v) != 1 for v in canon.values()):
        return None
    p = {k: float(np.squeeze(v)) for k, v in canon.items()}
    name = prior.name
    if "scale" in p and name != "LogNormal" and name != "Lognormal":
        return p["scale"]
    if name == "Exponential":
        return 1.0 / p["rate"]
    if name == "Gamma":
        return p["concentration"] / p["rate"]
    if name == "InverseGamma":
        return p["rate"] / max(p["concentration"] - 1.0, 1.0)
    if name in ("LogNormal", "Lognormal"):
        return float(np.exp(p["loc"]))
    return None


def lkj_log_prob(R: Any, eta: Any) -> Any:
    """numpyro's ``LKJ(k, eta)`` log density of correlation matrices ``R`` (..., k, k)."""
    import numpyro.distributions as dist

    return dist.LKJ(R.shape[-1], concentration=eta).log_prob(R)
