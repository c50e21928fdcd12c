"""Exact marginalisation of Gaussian group effects: sample the hyper-parameters only.

For a Gaussian response with the identity link and one grouping factor ``g`` whose ``K``
terms have design ``Z_j`` in group ``j``,

.. math::

    y_j = X_j \\beta + Z_j b_j + e_j, \\qquad b_j \\sim N(0, T T^\\top), \\qquad
    e_j \\sim N(0, \\sigma^2 I),

with ``T = diag(sd) L`` (``L`` the Cholesky factor of the LKJ correlation, the identity
across independent blocks), the group effects integrate out in closed form:
``y_j ~ N(X_j beta, sigma^2 I + Z_j T T' Z_j')``. With ``M_j = I + T' Z_j'Z_j T / sigma^2 =
C_j C_j'`` (a ``K x K`` Cholesky factorisation per group), the matrix determinant lemma and
the Woodbury identity give

.. math::

    \\log|V_j| = n_j \\log\\sigma^2 + \\log|M_j|, \\qquad
    r_j^\\top V_j^{-1} r_j = \\bigl(r_j^\\top r_j - |C_j^{-1} T^\\top Z_j^\\top r_j|^2
    / \\sigma^2\\bigr) / \\sigma^2,

which need only per-group sufficient statistics (``Z_j'Z_j``, ``Z_j'X_j``, ``Z_j'y_j``)
and ``X'X``, ``X'y``, ``y'y``: one log-density evaluation costs ``O(G K^3)`` whatever the
number of rows. NUTS samples the hyper-parameters (common effects, ``sd_<g>``, the LKJ
Cholesky factor, ``sigma``) under exactly the priors of :mod:`bayesmixed.build`; the group
effects ``r_<g>`` are then drawn, for every posterior draw, from their exact Gaussian
conditional ``u_j ~ N(M_j^{-1} T' Z_j' r_j / sigma^2, M_j^{-1})``, ``r_j = T u_j``, so the
posterior has the same variables as the full model's (``ranef``, predictions and plots work
unchanged).

Sampling space. Before NUTS starts, the log density is maximised (scipy's L-BFGS) and its
Hessian taken by finite differences; NUTS then runs on ``xi`` with
``theta = mode + C xi`` (``C C' =`` the inverse Hessian), an affine map with a constant
Jacobian that leaves the posterior unchanged but starts warm-up with a sensible scale and
correlation structure. Priors, their supports and transforms come from the shared table
(:mod:`bayesmixed.prior_table`: numpyro's densities and ``biject_to``): positive parameters
are sampled on the log scale, ``Uniform``-priored ones on the logit scale (as PyMC samples
them), LKJ Cholesky factors through numpyro's ``CorrCholeskyTransform`` (Stan's signed
stick-breaking of ``tanh`` values) with numpyro's ``LKJCholesky`` density, both written out
entry by entry (:func:`bayesmixed.prior_table.corr_cholesky_entries`), as are the ``K x K``
blocks of the likelihood: inside the compiled sampler that is several times faster than
matrix products of tiny matrices and numpyro's triangular transforms.

Compilation. Only NUTS is compiled. The mode search, the Hessian, the checks of starting
points and the map from draws back to the parameters evaluate the same density in NumPy
(:mod:`bayesmixed.prior_numpy`, the prior table's NumPy twins; gradients by central
differences, many points per call), so a fresh process pays no tracing or compilation
before sampling (it did: about three seconds of the sleepstudy fit). Models too large for
that (:data:`NUMPY_WORK`) or with a prior without a twin use compiled JAX programs of the
density instead. The data (sufficient statistics, prior parameters, the sampling-space
map) are arguments of every compiled program, never constants: NUTS is compiled once per
model structure and shapes and reused by later fits in the process (and across processes
through exported programs and JAX's persistent cache, ``docs/benchmarks.md``).

Precision. Sufficient statistics are taken about the least-squares fit (``y0 = y - X
beta_ols``, so ``X'y0 = 0`` and ``y'y`` never cancels against ``beta'X'X beta``), which
keeps the density accurate; everything runs in float64 (see ``docs/benchmarks.md`` for
float32).

Supported: family ``gaussian`` with link ``identity``, exactly one grouping factor (any
mix of correlated and independent blocks on it), priors whose PyMC names are in
:data:`SUPPORTED_PRIORS`. :func:`supports` says why another model is not, and
``Model.fit(marginalize="auto")`` then samples the full model.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesmixed import prior_numpy
from bayesmixed import prior_table as table
from bayesmixed.engines.common import (
    configure_jax,
    import_numpyro,
    numpy_rng,
    one_blas_thread,
    seed_sequence,
    to_datatree,
)
from bayesmixed.errors import PriorError

__all__ = [
    "ENTRYWISE_MAX_TERMS",
    "SUPPORTED_PRIORS",
    "MarginalNotSupported",
    "MarginalProblem",
    "draw_group_effects",
    "fit",
    "level_bucket",
    "marginal_loglik",
    "pad_levels",
    "prepare",
    "supports",
]


class MarginalNotSupported(Exception):
    """The model has no exact marginal form here; the message says why."""


# ---------------------------------------------------------------------------------------
# Priors and transforms: the shared table (numpyro densities and ``biject_to``)
# ---------------------------------------------------------------------------------------

_REAL, _POSITIVE, _INTERVAL = table.REAL, table.POSITIVE, table.INTERVAL

#: PyMC distribution names the marginal path understands (with PyMC's parameter aliases).
SUPPORTED_PRIORS: tuple[str, ...] = table.SUPPORTED_PRIORS


@dataclass(frozen=True)
class _PriorSlot:
    """One prior over a contiguous range of a parameter vector (static structure)."""

    label: str
    dist: str
    kind: str  # support: "real", "positive" (log transform) or "interval" (logit)
    start: int
    stop: int
    params: tuple[str, ...]  # names of its canonical parameter arrays in the data dict


def _slot(label: str, prior: Any, start: int, stop: int, key: str, data: dict,
          allowed: tuple[str, ...]) -> _PriorSlot:
    if prior.name not in table.PRIORS:
        raise MarginalNotSupported(
            f"prior {prior!r} of {label!r} (supported: {', '.join(SUPPORTED_PRIORS)})"
        )
    try:
        canon = table.canonical(prior, label)
    except PriorError as err:
        raise MarginalNotSupported(str(err)) from None
    kind = table.support(prior.name)
    if kind == _INTERVAL:
        lower, upper = np.asarray(canon["low"]), np.asarray(canon["high"])
        if _POSITIVE not in allowed or np.any(lower < 0) or np.any(upper <= lower):
            raise MarginalNotSupported(f"prior {prior!r} of {label!r} (bounded support)")
    elif kind not in allowed:
        raise MarginalNotSupported(f"prior {prior!r} of {label!r} has {kind} support")
    names = []
    for name, value in canon.items():
        arr = np.broadcast_to(np.asarray(value, dtype=float), (stop - start,)).copy()
        data[f"{key}.{name}"] = arr
        names.append(f"{key}.{name}")
    return _PriorSlot(label, prior.name, kind, start, stop, tuple(names))


def _slot_params(slot: _PriorSlot, data: dict) -> dict[str, Any]:
    return {n.rsplit(".", 1)[1]: data[n] for n in slot.params}


def _prior_logp(slot: _PriorSlot, x, data: dict, xp: Any = None):
    """Sum over the slot's coordinates of the prior log density at constrained ``x``.

    ``xp=np`` evaluates the NumPy twin (:mod:`bayesmixed.prior_numpy`), else JAX.
    """
    if xp is np:
        return np.sum(prior_numpy.log_prob(slot.dist, _slot_params(slot, data), x), axis=-1)
    import jax.numpy as jnp

    return jnp.sum(table.log_prob(slot.dist, _slot_params(slot, data), x), axis=-1)


def _constrain(slot: _PriorSlot, theta, data: dict, xp: Any = None):
    """Unconstrained ``theta`` (..., m) -> constrained value and log |Jacobian| (...)."""
    if xp is np:
        value, jac = prior_numpy.transform(slot.dist, _slot_params(slot, data)).forward(theta)
        return value, np.sum(jac, axis=-1)
    import jax.numpy as jnp

    transform = table.transform(slot.dist, _slot_params(slot, data))
    value = transform(theta)
    return value, jnp.sum(transform.log_abs_det_jacobian(theta, value), axis=-1)


def _unconstrain(slot: _PriorSlot, value: np.ndarray, data: dict) -> np.ndarray:
    """Inverse of :func:`_constrain` (numpy in and out), for starting values."""
    params = _slot_params(slot, data)
    if slot.kind == _INTERVAL:
        lower, upper = params["low"], params["high"]
        value = lower + (upper - lower) * np.clip((value - lower) / (upper - lower),
                                                  1e-6, 1 - 1e-6)
    if prior_numpy.has_twin(slot.dist):
        return prior_numpy.transform(slot.dist, params).inverse(value)
    return np.asarray(table.transform(slot.dist, params).inv(value), dtype=float)


# ---------------------------------------------------------------------------------------
# Small dense linear algebra, unrolled over K (batched elementwise; fuses well in XLA)
# ---------------------------------------------------------------------------------------


def _cholesky(xp, M: list[list[Any]]) -> list[list[Any]]:
    """Lower Cholesky factor of the symmetric ``M`` given by its lower triangle (nested
    lists of (...) arrays, ``M[i][j]`` for ``j <= i``), as nested lists of (...) arrays."""
    K = len(M)
    C: list[list[Any]] = [[None] * K for _ in range(K)]
    for j in range(K):
        s = M[j][j]
        for k in range(j):
            s = s - C[j][k] ** 2
        C[j][j] = xp.sqrt(s)
        for i in range(j + 1, K):
            s = M[i][j]
            for k in range(j):
                s = s - C[i][k] * C[j][k]
            C[i][j] = s / C[j][j]
    return C


def _forward(C: list[list[Any]], b: list[Any]) -> list[Any]:
    """Solve ``C x = b`` for lower-triangular ``C`` (nested lists)."""
    x: list[Any] = []
    for i in range(len(b)):
        s = b[i]
        for k in range(i):
            s = s - C[i][k] * x[k]
        x.append(s / C[i][i])
    return x


def _backward(C: list[list[Any]], b: list[Any]) -> list[Any]:
    """Solve ``C' x = b`` for lower-triangular ``C`` (nested lists)."""
    K = len(b)
    x: list[Any] = [None] * K
    for i in reversed(range(K)):
        s = b[i]
        for k in range(i + 1, K):
            s = s - C[k][i] * x[k]
        x[i] = s / C[i][i]
    return x


def _total(terms: Any) -> Any:
    """Sum of the terms that are not None (None if there are none)."""
    out = None
    for term in terms:
        if term is not None:
            out = term if out is None else out + term
    return out


# ---------------------------------------------------------------------------------------
# The problem: sufficient statistics, layout, log density
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Static structure of the unconstrained vector ``theta`` (hashable: a compile key)."""

    n_beta: int
    n_terms: int
    blocks: tuple[tuple[int, ...], ...]  # positions of each correlated block (size >= 2)
    beta_slots: tuple[_PriorSlot, ...]
    sd_slots: tuple[_PriorSlot, ...]  # one per term, start/stop index the sd vector
    family_slot: _PriorSlot  # sigma

    @property
    def sd_start(self) -> int:
        return self.n_beta

    @property
    def lkj_start(self) -> int:
        return self.n_beta + self.n_terms

    @property
    def lkj_sizes(self) -> tuple[int, ...]:
        return tuple(len(b) * (len(b) - 1) // 2 for b in self.blocks)

    @property
    def sigma_index(self) -> int:
        return self.lkj_start + sum(self.lkj_sizes)

    @property
    def dim(self) -> int:
        return self.sigma_index + 1


@dataclass
class MarginalProblem:
    """Everything the marginal sampler needs, computed once from the design.

    Attributes
    ----------
    layout : _Layout
        Static structure (sizes, blocks, prior kinds): with the array shapes, the compile key.
    data : dict of str to numpy.ndarray
        Sufficient statistics, prior parameters, and the sampling-space map
        (``mode``, ``scale``: ``theta = mode + scale @ xi``).
    label : str
        Grouping factor label.
    eta : float
        LKJ shape of the factor's correlated blocks.
    """

    layout: _Layout
    data: dict[str, np.ndarray]
    label: str
    eta: float

    @property
    def dim(self) -> int:
        """Number of sampled (unconstrained) coordinates."""
        return self.layout.dim


def supports(design: Any, priors: Any) -> str | None:
    """``None`` when the model can be marginalised exactly here, else the reason why not."""
    try:
        _check_design(design)
        _build_layout(design, priors, {})
    except MarginalNotSupported as err:
        return str(err)
    return None


def _check_design(design: Any) -> None:
    from bayesmixed.engines.common import row_varying_parameters

    common = design.common
    why = row_varying_parameters(design)
    if why:
        raise MarginalNotSupported(why)
    if design.family_name != "gaussian":
        raise MarginalNotSupported(f"family {design.family_name!r} is not gaussian")
    if common.link_name != "identity":
        raise MarginalNotSupported(f"link {common.link_name!r} is not identity")
    if len(design.factors) != 1:
        raise MarginalNotSupported(
            f"{len(design.factors)} grouping factors (exact marginalisation handles one)"
        )
    if set(common.family_priors) != {"sigma"}:
        raise MarginalNotSupported(f"family parameters {sorted(common.family_priors)}")
    if np.asarray(common.response).ndim != 1:
        raise MarginalNotSupported("the response is not a single column")


def _build_layout(design: Any, priors: Any, data: dict) -> _Layout:
    common = design.common
    fac = design.factors[0]
    beta_slots = []
    for term, sl in common.term_slices.items():
        beta_slots.append(
            # keys apart from the family's: a column may be called "sigma" (issue 10, bug 1)
            _slot(term, priors.common[term], sl.start, sl.stop, f"prior.common.{term}", data,
                  (_REAL,))
        )
    sd_slots = []
    for k, term in enumerate(fac.terms):
        label = f"sd({term}|{fac.label})"
        sd_slots.append(_slot(label, priors.sd[label], k, k + 1, f"prior.{label}", data,
                              (_POSITIVE,)))
    family_slot = _slot("sigma", priors.family["sigma"], 0, 1, "prior.family.sigma", data,
                        (_POSITIVE,))
    if fac.correlated_blocks:
        data["eta"] = np.asarray(float(priors.eta[fac.label]))
    return _Layout(
        n_beta=common.X.shape[1],
        n_terms=len(fac.terms),
        blocks=tuple(tuple(b) for b in fac.correlated_blocks),
        beta_slots=tuple(beta_slots),
        sd_slots=tuple(sd_slots),
        family_slot=family_slot,
    )


def _group_sums(index: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group column sums of ``values`` (n, m) -> (n_groups, m)."""
    return np.stack(
        [np.bincount(index, weights=values[:, j], minlength=n_groups)
         for j in range(values.shape[1])],
        axis=-1,
    ) if values.shape[1] else np.zeros((n_groups, 0))


def prepare(design: Any, priors: Any) -> MarginalProblem:
    """Sufficient statistics and layout for the marginal sampler.

    Raises
    ------
    MarginalNotSupported
        When the model has no exact marginal form here.
    """
    _check_design(design)
    configure_jax()
    data: dict[str, np.ndarray] = {}
    layout = _build_layout(design, priors, data)
    fac = design.factors[0]
    y = np.asarray(design.common.response, dtype=float) - design.offset  # offset(...) known
    X = np.asarray(design.common.X, dtype=float)
    Z = np.asarray(fac.X, dtype=float)
    idx = np.asarray(fac.index)
    G, K, P = len(fac.levels), Z.shape[1], X.shape[1]
    beta_ref = np.linalg.lstsq(X, y, rcond=None)[0] if P else np.zeros(0)
    y0 = y - X @ beta_ref
    ZZ = (Z[:, :, None] * Z[:, None, :]).reshape(len(y), K * K)
    ZX = (Z[:, :, None] * X[:, None, :]).reshape(len(y), K * P)
    data.update(
        A=_group_sums(idx, ZZ, G).reshape(G, K, K),
        B=_group_sums(idx, ZX, G).reshape(G, K, P),
        c=_group_sums(idx, Z * y0[:, None], G),
        XtX=X.T @ X,
        Xty0=X.T @ y0,
        yty0=np.asarray(y0 @ y0),
        n=np.asarray(float(len(y))),
        beta_ref=beta_ref,
    )
    problem = MarginalProblem(
        layout=layout, data=data, label=fac.label,
        eta=float(priors.eta.get(fac.label, 1.0)),
    )
    with one_blas_thread():  # tiny arrays: BLAS threads cost more than they give
        _set_sampling_map(problem, design)
    return problem


def _unpack(theta, data: dict, layout: _Layout, xp: Any = None):
    """``theta`` (..., D) -> (beta, sd list, L rows, T rows, sigma, log |Jacobian| + prior).

    ``L`` (the correlation's Cholesky factor) and ``T = diag(sd) L`` are nested lists of
    ``(...)`` arrays, with None where the entry is exactly zero (above the diagonal, and
    between blocks) and ``L[i][i]`` the float ``1.0`` where it is exactly one. JAX by
    default (densities and transforms from the prior table, numpyro); ``xp=np`` evaluates
    the same with their NumPy twins (:mod:`bayesmixed.prior_numpy`).
    """
    if xp is not np:
        import jax.numpy as jnp

        xp = jnp
    P, K = layout.n_beta, layout.n_terms
    beta = theta[..., :P]
    lp = xp.zeros(theta.shape[:-1], dtype=theta.dtype)
    for slot in layout.beta_slots:
        lp = lp + _prior_logp(slot, beta[..., slot.start:slot.stop], data, xp)
    sds = []
    for slot in layout.sd_slots:
        raw = theta[..., P + slot.start:P + slot.stop]
        value, jac = _constrain(slot, raw, data, xp)
        lp = lp + jac + _prior_logp(slot, value, data, xp)
        sds.append(value[..., 0])
    Lc: list[list[Any]] = [[1.0 if i == j else None for j in range(K)] for i in range(K)]
    pos = layout.lkj_start
    for block, size in zip(layout.blocks, layout.lkj_sizes, strict=True):
        Lb, jac, prior = table.corr_cholesky_entries(theta[..., pos:pos + size], len(block),
                                                     data["eta"], xp)
        lp = lp + jac + prior
        for a, ia in enumerate(block):
            for b, ib in enumerate(block):
                Lc[ia][ib] = Lb[a][b]
        pos += size
    s = layout.sigma_index
    sigma, jac = _constrain(layout.family_slot, theta[..., s:s + 1], data, xp)
    lp = lp + jac + _prior_logp(layout.family_slot, sigma, data, xp)
    T = [[None if Lc[i][j] is None else sds[i] if type(Lc[i][j]) is float  # exactly 1
          else sds[i] * Lc[i][j] for j in range(K)] for i in range(K)]
    return beta, sds, Lc, T, sigma[..., 0], lp


#: Largest number of terms ``K`` of the factor for which :func:`_group_terms` writes the
#: ``K x K`` algebra out entry by entry; larger blocks use batched matrix products. XLA's
#: compilation time grows steeply with the written-out form (a value and gradient, cold:
#: K = 3: 2.9 s against 2.2 s with matrix products; K = 4: 5.9 against 2.7; K = 6: 47
#: against 5), while its gain in sampling speed is largest for small blocks.
ENTRYWISE_MAX_TERMS = 3


def _group_terms(xp, beta, T, sigma, data: dict):
    """Per-group pieces: Cholesky factor of ``M_j``, ``w_j = C_j^-1 T' d_j``, ``d_j``.

    Up to :data:`ENTRYWISE_MAX_TERMS` terms, written out entry by entry over the ``K x K``
    blocks (elementwise operations on ``(..., G)`` arrays; entries of ``T`` that are None
    are zero and skipped): inside a compiled sampler XLA fuses these into a few kernels,
    where batched matrix products of tiny matrices are slow, and so are their gradients
    (with the LKJ factor written out too, a gradient of the 40-row ``y ~ x + (x | g)``
    took 0.7 instead of 4.3 microseconds, ``docs/benchmarks.md``). Larger blocks use
    batched matrix products (see :data:`ENTRYWISE_MAX_TERMS`).
    """
    A, B, c = data["A"], data["B"], data["c"]
    K = A.shape[-1]
    delta = beta - data["beta_ref"]
    if K > ENTRYWISE_MAX_TERMS:
        return _group_terms_matrices(xp, delta, T, sigma, data)
    d = c - xp.sum(B * delta[..., None, None, :], axis=-1)  # (..., G, K) = Z_j'(y_j - X_j beta)
    inv_s2 = (1.0 / sigma**2)[..., None]

    def col(entry):  # a (...) entry of T against the groups' axis
        return None if entry is None else entry[..., None]

    Tg = [[col(entry) for entry in row] for row in T]
    # S = A T and M = I + T' A T / sigma^2 (lower triangle), for every group
    AT = [[_total(A[:, i, k] * Tg[k][j] if Tg[k][j] is not None else None for k in range(K))
           for j in range(K)] for i in range(K)]
    M: list[list[Any]] = [[None] * K for _ in range(K)]
    for i in range(K):
        for j in range(i + 1):
            tat = _total(Tg[k][i] * AT[k][j] if Tg[k][i] is not None else None
                         for k in range(K))
            M[i][j] = (1.0 if i == j else 0.0) + tat * inv_s2
    C = _cholesky(xp, M)
    u = [_total(d[..., k] * Tg[k][j] if Tg[k][j] is not None else None for k in range(K))
         for j in range(K)]  # T' d_j for every group
    w = _forward(C, u)
    return C, w, delta


def _group_terms_matrices(xp, delta, T, sigma, data: dict):
    """:func:`_group_terms` for larger blocks, with batched matrix products."""
    A, B, c = data["A"], data["B"], data["c"]
    K = A.shape[-1]
    d = c - (B @ delta[..., None, :, None])[..., 0]  # (..., G, K) = Z_j'(y_j - X_j beta)
    inv_s2 = 1.0 / sigma**2
    zero = xp.zeros_like(sigma)
    Tm = xp.stack([xp.stack([zero if v is None else v for v in row], axis=-1) for row in T],
                  axis=-2)  # (..., K, K)
    TAT = xp.swapaxes(Tm, -1, -2)[..., None, :, :] @ (A @ Tm[..., None, :, :])  # (..., G, K, K)
    M = np.eye(K, dtype=A.dtype) + TAT * inv_s2[..., None, None, None]
    C = _cholesky(xp, [[M[..., i, j] for j in range(i + 1)] for i in range(K)])
    u = d @ Tm  # (..., G, K): T' d_j for every group
    w = _forward(C, [u[..., k] for k in range(K)])
    return C, w, delta


def _loglik(xp, beta, T, sigma, data: dict):
    """Marginal log-likelihood of the response, group effects integrated out."""
    C, w, delta = _group_terms(xp, beta, T, sigma, data)
    K = len(w)
    logdet = 0.0
    for k in range(K):
        logdet = logdet + 2.0 * xp.sum(xp.log(C[k][k]), axis=-1)
    ww = 0.0
    for k in range(K):
        ww = ww + xp.sum(w[k] ** 2, axis=-1)
    rr = (data["yty0"] - 2.0 * xp.sum(delta * data["Xty0"], axis=-1)
          + xp.sum(delta[..., :, None] * data["XtX"] * delta[..., None, :], axis=(-2, -1)))
    s2 = sigma**2
    n = data["n"]
    quad = (rr - ww / s2) / s2
    return -0.5 * (n * math.log(2 * math.pi) + n * xp.log(s2) + logdet + quad)


def _log_density(theta, data: dict, layout: _Layout):
    """Log posterior density of unconstrained ``theta`` (..., D) (JAX)."""
    import jax.numpy as jnp

    beta, _, _, T, sigma, lp = _unpack(theta, data, layout)
    return lp + _loglik(jnp, beta, T, sigma, data)


def _constrained(theta, data: dict, layout: _Layout, xp: Any = None):
    """``theta`` (..., D) -> beta, sd (..., K), Cholesky factor (..., K, K), sigma.

    JAX by default, NumPy with ``xp=np``.
    """
    if xp is not np:
        import jax.numpy as jnp

        xp = jnp
    beta, sds, Lc, _, sigma, _ = _unpack(theta, data, layout, xp)
    zero = xp.zeros(theta.shape[:-1], dtype=theta.dtype)
    L = xp.stack([xp.stack([zero if v is None else zero + v for v in row], axis=-1)
                  for row in Lc], axis=-2)
    return beta, xp.stack(sds, axis=-1), L, sigma


_SAMPLING_MAP = ("mode", "scale")


def _statistics(data: dict) -> dict:
    """The arguments of the compiled programs: ``data`` without the sampling-space map.

    The per-group statistics are padded with empty levels to :func:`level_bucket` (exact:
    they add zero), so the programs are compiled once per level bucket, not per level count.
    """
    return pad_levels({k: v for k, v in data.items() if k not in _SAMPLING_MAP})


@functools.cache
def _programs() -> dict[str, Callable]:
    """The marginal model's compiled programs, one per layout and shapes, data as arguments.

    ``value_and_grad(theta, stats, layout)`` of the single-point log density and
    ``constrained`` (draws -> model parameters), for models too large for the NumPy
    evaluation (see :class:`_Density`) or with a prior that has no NumPy twin. ``layout``
    is static; every array (statistics, prior parameters) is an argument, so fits of new
    data with the same structure reuse the programs (in-process, and across processes
    through JAX's persistent cache).
    """
    import jax

    configure_jax()
    import_numpyro()  # before tracing: else traced twice (see import_numpyro)
    return {
        "value_and_grad": jax.jit(jax.value_and_grad(_log_density), static_argnums=2),
        "constrained": jax.jit(_constrained, static_argnums=2),
    }


def clear_programs() -> None:
    """Forget this module's compiled programs (see :func:`bayesmixed.engines.clear_compiled`)."""
    _programs.cache_clear()


#: Largest work of the mode search in NumPy, in points evaluated (about ``2 D**2`` for the
#: Hessian and 30 gradients of ``2 D`` points) times ``levels * K**2``: about a second here
#: (``D = 10``, ``K = 3``: 1,200 levels). Larger models use the compiled programs, whose
#: compilation (or loading from the persistent cache) then costs less.
NUMPY_WORK = 10_000_000

#: Elements of the ``(points, levels, K, K)`` arrays of one NumPy evaluation batch.
_BATCH_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class _Density:
    """The log posterior density for the work before sampling: mode, curvature, checks.

    With ``numpy`` (every prior has a NumPy twin and the model is small, see
    :data:`NUMPY_WORK`) it is evaluated in NumPy, many points at once, with gradients and
    the Hessian by central differences: nothing is traced or compiled, so a fresh process
    starts sampling at once. Otherwise the compiled JAX program gives exact gradients.
    Both evaluate the density NUTS samples (``tests/test_marginal.py`` checks they agree).
    """

    data: dict
    layout: _Layout
    numpy: bool

    @classmethod
    def of(cls, problem: MarginalProblem) -> _Density:
        layout = problem.layout
        G, K = problem.data["c"].shape
        twins = all(prior_numpy.has_twin(slot.dist) for slot in
                    (*layout.beta_slots, *layout.sd_slots, layout.family_slot))
        D = layout.dim
        small = (2 * D * D + 60 * D + 30) * G * K * K <= NUMPY_WORK
        return cls(problem.data, layout, twins and small)

    def logp(self, theta: np.ndarray) -> np.ndarray:
        """Log density at each row of ``theta`` (..., D); non-finite values are -inf."""
        theta = np.asarray(theta, dtype=float)
        flat = theta.reshape(-1, theta.shape[-1])
        if not self.numpy:
            out = np.array([self.value_and_grad(row)[0] for row in flat])
            return out.reshape(theta.shape[:-1])
        G, K = self.data["c"].shape
        rows = max(1, _BATCH_ELEMENTS // max(G * K * max(K, self.layout.n_beta), 1))
        out = np.empty(len(flat))
        with np.errstate(all="ignore"):
            for lo in range(0, len(flat), rows):
                part = flat[lo:lo + rows]
                beta, _, _, T, sigma, lp = _unpack(part, self.data, self.layout, np)
                out[lo:lo + rows] = lp + _loglik(np, beta, T, sigma, self.data)
        out[~np.isfinite(out)] = -np.inf
        return out.reshape(theta.shape[:-1])

    def _steps(self, theta: np.ndarray, rel: float) -> np.ndarray:
        return rel * np.maximum(1.0, np.abs(theta))

    def value_and_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Log density and its gradient at one ``theta`` (D,); ``-inf`` if not finite."""
        theta = np.asarray(theta, dtype=float)
        if self.numpy:
            h = self._steps(theta, 6e-6)  # about eps ** (1/3): central differences
            eye = np.diag(h)
            values = self.logp(np.concatenate([theta[None], theta + eye, theta - eye]))
            D = len(theta)
            value, grad = values[0], (values[1:D + 1] - values[D + 1:]) / (2 * h)
        else:
            value, grad = _programs()["value_and_grad"](theta, _statistics(self.data),
                                                        self.layout)
            value, grad = float(value), np.asarray(grad)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return -np.inf, np.zeros_like(theta)
        return float(value), grad

    def hessian(self, theta: np.ndarray) -> np.ndarray:
        """Hessian of the log density at ``theta`` (D,) by central differences."""
        D = len(theta)
        if not self.numpy:  # of exact gradients
            h = self._steps(theta, 1e-5)
            H = np.empty((D, D))
            for i in range(D):
                e = np.zeros(D)
                e[i] = h[i]
                H[:, i] = (self.value_and_grad(theta + e)[1]
                           - self.value_and_grad(theta - e)[1]) / (2 * h[i])
            return H
        h = self._steps(theta, 1e-4)  # about eps ** (1/4): second differences of values
        E = np.diag(h)
        i, j = np.triu_indices(D, 1)
        points = np.concatenate([
            theta[None], theta + E, theta - E,
            theta + E[i] + E[j], theta + E[i] - E[j], theta - E[i] + E[j], theta - E[i] - E[j],
        ])
        f = self.logp(points)
        f0, plus, minus = f[0], f[1:D + 1], f[D + 1:2 * D + 1]
        pp, pm, mp, mm = np.split(f[2 * D + 1:], 4)
        H = np.diag((plus - 2 * f0 + minus) / h**2)
        H[i, j] = H[j, i] = (pp - pm - mp + mm) / (4 * h[i] * h[j])
        return H


def marginal_loglik(problem: MarginalProblem, beta: np.ndarray, sd: np.ndarray,
                    cor_chol: np.ndarray, sigma: float) -> float:
    """Marginal log-likelihood at given parameter values (numpy; for checks).

    Parameters
    ----------
    problem : MarginalProblem
    beta : numpy.ndarray
        Common effects, ``(P,)``.
    sd : numpy.ndarray
        Group SDs, ``(K,)``.
    cor_chol : numpy.ndarray
        Cholesky factor of the group correlation matrix, ``(K, K)``.
    sigma : float
        Residual SD.
    """
    K = len(sd)
    T = [[np.asarray(sd[i] * cor_chol[i, j]) for j in range(K)] for i in range(K)]
    return float(_loglik(np, np.asarray(beta, float), T, np.asarray(float(sigma)),
                         problem.data))


# ---------------------------------------------------------------------------------------
# Starting point and preconditioner (scipy's L-BFGS on the log density)
# ---------------------------------------------------------------------------------------


def _initial_theta(problem: MarginalProblem, design: Any) -> np.ndarray:
    layout, data = problem.layout, problem.data
    fac = design.factors[0]
    y = np.asarray(design.common.response, dtype=float) - design.offset  # offset(...) known
    resid = float(np.sqrt(data["yty0"] / max(len(y) - layout.n_beta, 1))) or 1.0
    theta = np.zeros(layout.dim)
    theta[: layout.n_beta] = data["beta_ref"]
    for slot, k in zip(layout.sd_slots, range(layout.n_terms), strict=True):
        rms = float(np.sqrt(np.mean(fac.X[:, k] ** 2))) or 1.0
        theta[layout.sd_start + k] = _unconstrain(slot, np.array([0.5 * resid / rms]), data)[0]
    theta[layout.sigma_index] = _unconstrain(layout.family_slot, np.array([resid]), data)[0]
    return theta


def _set_sampling_map(problem: MarginalProblem, design: Any) -> None:
    """Find the posterior mode and a Laplace preconditioner; store ``mode`` and ``scale``."""
    from scipy.optimize import minimize

    layout, data = problem.layout, problem.data
    density = _Density.of(problem)

    def neg_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = density.value_and_grad(theta)
        return (-value, -grad) if np.isfinite(value) else (1e300, grad)

    theta0 = _initial_theta(problem, design)
    width = np.full(layout.dim, 25.0)
    width[: layout.n_beta] = np.inf
    bounds = list(zip(theta0 - width, theta0 + width, strict=True))
    with np.errstate(all="ignore"):
        res = minimize(neg_and_grad, theta0, jac=True, method="L-BFGS-B", bounds=bounds)
    ok = np.all(np.isfinite(res.x)) and np.isfinite(density.logp(res.x))
    mode = res.x if ok else theta0
    scale = None
    H = -density.hessian(mode)
    if np.all(np.isfinite(H)):
        H = 0.5 * (H + H.T)
        vals, vecs = np.linalg.eigh(H)
        if vals.max() > 0:
            # a flat or negative curvature (a saddle, finite-difference noise on a very
            # narrow posterior) must not become a huge scale: NUTS's step size collapses
            # in it and warm-up cannot recover (seen with a nearly noiseless response);
            # unit scale there, as without a preconditioner, and warm-up adapts it
            vals = np.where(vals > vals.max() * 1e-8, vals, 1.0)
            cov = (vecs / vals) @ vecs.T
            try:
                scale = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                scale = None
    if scale is None:
        scale = np.eye(layout.dim)
    data["mode"] = mode
    data["scale"] = scale


# ---------------------------------------------------------------------------------------
# Draws: constrained hyper-parameters and the exact conditional of the group effects
# ---------------------------------------------------------------------------------------


def _potential_fn_gen(layout: _Layout) -> Callable[[dict], Callable]:
    """``data -> potential(xi)`` for numpyro (negative log density in sampling space)."""

    import jax.numpy as jnp

    def gen(data: dict) -> Callable:
        def potential(xi):
            # a sum, not a matrix product: one fused kernel (see _group_terms)
            theta = data["mode"] + jnp.sum(data["scale"] * xi, axis=-1)
            return -_log_density(theta, data, layout)

        return potential

    return gen


def constrained_draws(problem: MarginalProblem, xi: np.ndarray) -> dict[str, np.ndarray]:
    """Sampling-space draws ``xi`` (..., D) -> the model's parameters.

    Returns
    -------
    dict
        ``beta`` (..., P), ``sd`` (..., K), ``cor_chol`` and ``cor`` (..., K, K) and
        ``sigma`` (...).
    """
    data, layout = problem.data, problem.layout
    theta = data["mode"] + xi @ data["scale"].T
    if _Density.of(problem).numpy:
        beta, sd, L, sigma = _constrained(theta, data, layout, np)
    else:
        beta, sd, L, sigma = (np.asarray(x) for x in _programs()["constrained"](
            theta, _statistics(data), layout))
    return {
        "beta": beta,
        "sd": sd,
        "cor_chol": L,
        "cor": L @ np.swapaxes(L, -1, -2),
        "sigma": sigma,
    }


def draw_group_effects(
    problem: MarginalProblem,
    beta: np.ndarray,
    sd: np.ndarray,
    cor_chol: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator,
    *,
    chunk: int = 256,
) -> np.ndarray:
    """Draw ``r_<g>`` from its exact conditional given each hyper-parameter draw.

    Parameters
    ----------
    problem : MarginalProblem
    beta, sd, cor_chol, sigma : numpy.ndarray
        Hyper-parameter draws with a common leading shape ``S`` (e.g. ``(chains, draws)``):
        ``S + (P,)``, ``S + (K,)``, ``S + (K, K)``, ``S``.
    rng : numpy.random.Generator
        Source of the standard-normal variates (explicit, so seeds reproduce).
    chunk : int
        Draws processed at once (bounds memory at ``chunk x G x K x K``).

    Returns
    -------
    numpy.ndarray
        ``S + (G, K)`` group effects.
    """
    data = problem.data
    lead = sigma.shape
    S = int(np.prod(lead))
    G, K = data["c"].shape
    beta = beta.reshape(S, -1)
    sd = sd.reshape(S, K)
    cor_chol = cor_chol.reshape(S, K, K)
    sigma = sigma.reshape(S)
    out = np.empty((S, G, K))
    for lo in range(0, S, chunk):
        sl = slice(lo, min(S, lo + chunk))
        eps = rng.standard_normal((sl.stop - sl.start, G, K))
        Tm = sd[sl, :, None] * cor_chol[sl]
        T = [[Tm[:, i, j] for j in range(K)] for i in range(K)]
        C, w, _ = _group_terms(np, beta[sl], T, sigma[sl], data)
        inv_s2 = (1.0 / sigma[sl] ** 2)[:, None]
        rhs = [w[k] * inv_s2 + eps[:, :, k] for k in range(K)]
        u = np.stack(_backward(C, rhs), axis=-1)  # (s, G, K) ~ N(M^-1 T'd/s2, M^-1)
        out[sl] = np.einsum("skl,sgl->sgk", Tm, u)
    return out.reshape(*lead, G, K)


def fit(design: Any, priors: Any, settings: Any) -> tuple[Any, float]:
    """Fit by exact marginalisation; return the DataTree and the sampler's wall time.

    Parameters
    ----------
    design : Design
    priors : PriorSet
    settings : SamplerSettings

    Returns
    -------
    tuple
        ``(idata, seconds)``: the DataTree with the same posterior variables as the full
        model (common effects, ``sd_<g>``, ``cor_<g>``, ``r_<g>``, ``sigma``), and the wall
        time of the whole call. The posterior's attributes split it: ``compile_time``
        (tracing and compiling, or loading from the caches), ``sampling_time`` (NUTS
        alone) and ``preparation_time`` (statistics, mode, group-effect draws, DataTree).

    Examples
    --------
    >>> import bayesmixed as bm
    >>> model = bm.Model("Reaction ~ Days + (Days | Subject)", bm.datasets.sleepstudy())
    >>> fitted = model.fit(marginalize=True, random_seed=1)   # doctest: +SKIP
    >>> fitted.settings.engine                                   # doctest: +SKIP
    'marginal'
    """
    import time

    from bayesmixed.engines.nuts import run_nuts

    start = time.perf_counter()
    problem = prepare(design, priors)
    seeds = seed_sequence(settings.random_seed).spawn(3)
    init = _initial_points(problem, numpy_rng(seeds[0]), settings.chains)
    nuts = run_nuts(
        _potential_fn_gen(problem.layout),
        pad_levels(problem.data),  # same density; one compiled sampler per level bucket
        init,
        settings=settings,
        seed=seeds[1],
        static_key=("marginal", problem.layout),
    )
    hyper = constrained_draws(problem, nuts.z)
    r = draw_group_effects(
        problem, hyper["beta"], hyper["sd"], hyper["cor_chol"], hyper["sigma"],
        numpy_rng(seeds[2]),
    )
    idata = _to_datatree(design, problem, hyper, r, nuts, settings)
    seconds = time.perf_counter() - start
    spent = nuts.compile_seconds + nuts.sampling_seconds
    idata["posterior"].attrs["preparation_time"] = seconds - spent
    return idata, seconds


def level_bucket(n_levels: int) -> int:
    """Number of levels the compiled programs are built for: ``n_levels`` rounded up.

    Powers of two up to 256 (8, 16, 32, ...), then steps of 1/8 of the power of two below
    (288, 320, ..., 3072, ...), so refits on data with a few more or fewer levels (a
    bootstrap, cross-validation folds, simulations) reuse one compiled program, at the
    price of at most 12.5% padding on models large enough for it to cost time.
    """
    n = max(int(n_levels), 1)
    if n <= 256:
        return max(8, 1 << (n - 1).bit_length())
    step = 1 << ((n - 1).bit_length() - 4)
    return -(-n // step) * step


def pad_levels(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The statistics with empty levels appended up to :func:`level_bucket`.

    An empty level has ``Z_j'Z_j = 0``, ``Z_j'X_j = 0`` and ``Z_j'y_j = 0``, so ``M_j = I``
    and it adds exactly zero to the marginal log density: the posterior is unchanged. Only
    the compiled programs see the padding; group-effect draws use the real levels.
    """
    G = data["c"].shape[0]
    extra = level_bucket(G) - G
    if extra == 0:
        return data
    out = dict(data)
    for name in ("A", "B", "c"):
        arr = data[name]
        out[name] = np.concatenate([arr, np.zeros((extra, *arr.shape[1:]), dtype=arr.dtype)])
    return out


def _initial_points(problem: MarginalProblem, rng: np.random.Generator,
                    chains: int) -> np.ndarray:
    """Starting points in sampling space: uniform(-1, 1) jitter about the mode.

    A chain whose start has a non-finite log density (possible along nearly flat
    directions of the preconditioner) has its jitter halved until it is finite.
    """
    init = rng.uniform(-1.0, 1.0, size=(chains, problem.dim))
    data = problem.data
    density = _Density.of(problem)
    for _ in range(30):
        theta = data["mode"] + init @ data["scale"].T
        ok = np.isfinite(density.logp(theta))
        if ok.all():
            break
        init[~ok] *= 0.5
    return init


def _to_datatree(design: Any, problem: MarginalProblem, hyper: dict, r: np.ndarray,
                 nuts: Any, settings: Any) -> Any:
    from bayesmixed.engines.nuts import nuts_attrs

    common = design.common
    layout = design.layout
    names = layout.factor(problem.label)
    posterior: dict[str, np.ndarray] = {}
    for term_names in layout.common:
        values = hyper["beta"][..., common.term_slices[term_names.term]]
        posterior[term_names.var] = values if term_names.dim else values[..., 0]
    posterior[names.sd] = hyper["sd"]
    if problem.layout.blocks:
        posterior[names.cor] = hyper["cor"]
    posterior[names.r] = r
    posterior[layout.family["sigma"]] = hyper["sigma"]
    observed = {layout.response: np.asarray(common.response)}
    dims = {k: v for k, v in layout.dims().items() if k in posterior or k in observed}
    return to_datatree(
        posterior,
        nuts.stats,
        observed=observed,
        coords=layout.coords(),
        dims=dims,
        attrs=nuts_attrs(nuts, settings, marginalized=1),
    )
