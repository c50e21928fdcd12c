"""Full-model NUTS for mixed models of any supported family, on a log density written in JAX.

The chooser (:func:`bayesmixed.engines.choose_engine`) sends it the full model of every
model it supports with ``sampler="numpyro"``: Gaussian (identity link; ``marginalize=False``
or no exact marginal form, e.g. crossed factors), bernoulli, binomial (``cbind``
included), Poisson and negative binomial with their usual links; other links, priors or
samplers, distributional and category models use the PyMC translation
(:mod:`bayesmixed.engines.nuts`), against which this engine is checked
(``tests/test_glmm.py``).

It samples the same model as :mod:`bayesmixed.build` (same priors, same posterior
variables, dims and coords), but instead of translating PyMC's graph to JAX it writes the
log density from the design:

* the linear predictor is ``X beta + sum_g sum_k X_g[:, k] * r_g[index_g, k]``: a gather of
  each factor's group effects by level index (its gradient is a segment sum), never a dense
  ``Z``;
* correlated blocks use the LKJ prior on their Cholesky factor (numpyro's
  ``LKJCholesky`` and ``CorrCholeskyTransform``); priors come from the one prior table,
  :mod:`bayesmixed.prior_table` (PyMC's alternative parametrisations resolved by
  :func:`~bayesmixed.prior_table.canonical`), likelihoods are written in JAX;
* every array of the data (design, response, level indices, prior parameters, the warm
  start, and each factor's parametrisation, below) is an *argument* of the compiled
  programs, so one compiled sampler serves every data set of the same structure and
  shapes, in this process and (through :func:`bayesmixed.engines.nuts.run_nuts`'s caches)
  in later ones.

Hand-off to NUTS (measured in ``docs/benchmarks.md``): the joint posterior is first
maximised in the non-centred parametrisation (L-BFGS on the compiled gradient); at that point
each factor is put in the centred parametrisation (``r`` sampled directly) when its levels
are informative (median over levels of ``min_k sum_i w_i x_ik^2 * sd_k^2 >= 1``, or 4 with
group slopes (:data:`CENTRE_SLOPES_AT`), ``w_i`` the
likelihood's curvature in the linear predictor), else non-centred (``z`` with ``r = T z``);
NUTS then runs on ``xi`` with ``theta = mode + S xi``, ``S`` from the Hessian there (a
dense Cholesky factor of its inverse for up to :data:`DENSE_MAX` coordinates, its exact
diagonal, from a few Hessian-vector products, beyond). Both maps have constant Jacobians and
leave the posterior unchanged.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesmixed import prior_numpy
from bayesmixed import prior_table as table
from bayesmixed.engines.common import (
    configure_jax,
    import_numpyro,
    lbfgs_minimise,
    numpy_rng,
    one_blas_thread,
    seed_sequence,
    to_datatree,
)
from bayesmixed.errors import PriorError

__all__ = [
    "CHOSEN_FAMILIES",
    "DENSE_MAX",
    "GlmmLayout",
    "GlmmProblem",
    "fit",
    "prepare",
    "supports",
]

#: Links the engine writes for each family; other links use the PyMC translation.
SUPPORTED_LINKS: dict[str, tuple[str, ...]] = {
    "bernoulli": ("logit", "probit", "cloglog"),
    "binomial": ("logit", "probit", "cloglog"),
    "poisson": ("log",),
    "negativebinomial": ("log",),
    "gaussian": ("identity",),
}

#: Families whose full model the chooser sends to this engine (every family it writes).
CHOSEN_FAMILIES: tuple[str, ...] = ("bernoulli", "binomial", "poisson", "negativebinomial",
                                    "gaussian")

#: Sampling spaces up to this size get a dense Hessian preconditioner, larger ones its diagonal.
DENSE_MAX = 600

#: The largest preconditioner scale of any direction (of the unconstrained coordinates).
MAX_SCALE = 10.0

class GlmmNotSupported(Exception):
    """The model is outside what this engine writes; the message says why."""


@dataclass(frozen=True)
class _Slot:
    """A prior over ``theta[start:stop]``: its PyMC name and the data keys of its parameters."""

    key: str
    dist: str
    start: int
    stop: int
    params: tuple[str, ...]


@dataclass(frozen=True)
class _FactorLayout:
    label: str
    n_levels: int
    n_terms: int
    blocks: tuple[tuple[int, ...], ...]  # correlated blocks (>= 2 columns)
    ones: bool  # a single all-ones column: r[index] alone
    centred: bool | None  # None: data[f"centred{f}"] says (GlmmLayout.generic)
    sd_slots: tuple[_Slot, ...]  # one per term
    lkj_start: int
    level_start: int

    @property
    def lkj_sizes(self) -> tuple[int, ...]:
        return tuple(len(b) * (len(b) - 1) // 2 for b in self.blocks)


@dataclass(frozen=True)
class GlmmLayout:
    """Static structure of the unconstrained vector (hashable: part of the compile key)."""

    family: str
    link: str
    n_beta: int
    beta_slots: tuple[_Slot, ...]
    factors: tuple[_FactorLayout, ...]
    family_slots: tuple[_Slot, ...]  # positive family parameters (sigma, alpha)
    dim: int
    dense: bool

    def with_centring(self, centred: tuple[bool | None, ...], dense: bool) -> GlmmLayout:
        """The same layout with other parametrisations per factor and preconditioner kind."""
        from dataclasses import replace

        facs = tuple(replace(f, centred=c) for f, c in zip(self.factors, centred, strict=True))
        return replace(self, factors=facs, dense=dense)

    def generic(self) -> GlmmLayout:
        """The layout whose compiled programs take each factor's parametrisation as data.

        Every program of the engine (warm start, NUTS, draws) is compiled for this form,
        with ``data[f"centred{f}"]`` (:func:`_flagged`) saying which parametrisation each
        factor has: one program per model structure, whichever the data choose.
        """
        return self.with_centring(tuple(None for _ in self.factors), self.dense)


@dataclass
class GlmmProblem:
    """Layout, data arrays and names of one model (see :func:`prepare`)."""

    layout: GlmmLayout
    data: dict[str, np.ndarray]
    family_names: tuple[str, ...]


# ---------------------------------------------------------------------------------------
# Layout and data from the design
# ---------------------------------------------------------------------------------------


def _slot(label: str, prior: Any, start: int, stop: int, key: str, data: dict,
          support: str) -> _Slot:
    """A prior slot from the prior table; its canonical parameters go into ``data``."""
    kind = table.PRIORS.get(prior.name)
    if kind is None or kind.numpyro is None:
        proper = sorted(n for n, k in table.PRIORS.items()
                        if k.numpyro is not None and k.support != table.INTERVAL)
        raise GlmmNotSupported(f"prior {prior!r} of {label!r} (supported: {', '.join(proper)})")
    if kind.support != support:
        raise GlmmNotSupported(f"prior {prior!r} of {label!r} has {kind.support} support")
    try:
        canon = table.canonical(prior, label)
    except PriorError as err:
        raise GlmmNotSupported(str(err)) from None
    names = []
    for name, value in canon.items():
        arr = np.broadcast_to(np.asarray(value, dtype=float), (stop - start,)).copy()
        data[f"{key}.{name}"] = arr
        names.append(f"{key}.{name}")
    return _Slot(key, prior.name, start, stop, tuple(names))


def supports(design: Any, priors: Any) -> str | None:
    """``None`` when this engine can sample the model, else the reason why not."""
    try:
        _layout(design, priors, {})
    except GlmmNotSupported as err:
        return str(err)
    return None


def _layout(design: Any, priors: Any, data: dict) -> GlmmLayout:
    from bayesmixed.engines.common import row_varying_parameters

    common = design.common
    why = row_varying_parameters(design)
    if why:
        raise GlmmNotSupported(why)
    family, link = design.family_name, common.link_name
    if family not in SUPPORTED_LINKS:
        raise GlmmNotSupported(f"family {family!r}")
    if link not in SUPPORTED_LINKS[family]:
        raise GlmmNotSupported(f"link {link!r} of family {family!r}")
    extra = set(priors.family) - {"negativebinomial": {"alpha"}, "gaussian": {"sigma"}}.get(
        family, set())
    if extra:
        raise GlmmNotSupported(f"family parameters {sorted(extra)}")
    pos = 0
    beta_slots = []
    for term, sl in common.term_slices.items():
        beta_slots.append(_slot(term, priors.common[term], sl.start, sl.stop, f"b.{term}",
                                data, table.REAL))
    pos = common.X.shape[1]
    factors = []
    for f, fac in enumerate(design.factors):
        K, G = len(fac.terms), len(fac.levels)
        sd_slots = tuple(
            _slot(f"sd({t}|{fac.label})", priors.sd[f"sd({t}|{fac.label})"], pos + k,
                  pos + k + 1, f"sd{f}.{k}", data, table.POSITIVE)
            for k, t in enumerate(fac.terms)
        )
        pos += K
        blocks = tuple(tuple(b) for b in fac.correlated_blocks)
        lkj_start = pos
        pos += sum(len(b) * (len(b) - 1) // 2 for b in blocks)
        if blocks:
            data[f"eta{f}"] = np.asarray(float(priors.eta[fac.label]))
        ones = K == 1 and bool(np.all(fac.X == 1))
        factors.append(_FactorLayout(fac.label, G, K, blocks, ones, False, sd_slots,
                                     lkj_start, pos))
        pos += G * K
    family_slots = []
    for name, prior in priors.family.items():
        family_slots.append(_slot(name, prior, pos, pos + 1, f"fam.{name}", data,
                                  table.POSITIVE))
        pos += 1
    return GlmmLayout(family, link, common.X.shape[1], tuple(beta_slots), tuple(factors),
                      tuple(family_slots), pos, pos <= DENSE_MAX)


def prepare(design: Any, priors: Any) -> GlmmProblem:
    """The engine's layout and data arrays for a design (raises ``GlmmNotSupported``)."""
    data: dict[str, np.ndarray] = {}
    layout = _layout(design, priors, data)
    common = design.common
    response = np.asarray(common.response, dtype=float)
    if layout.family == "binomial":
        data["y"], data["trials"] = response[:, 0], response[:, 1]
    else:
        data["y"] = response.reshape(-1)
    data["X"] = np.asarray(common.X, dtype=float)
    data["offset"] = np.asarray(design.offset, dtype=float)  # zeros without offset() terms
    for f, (fac, fl) in enumerate(zip(design.factors, layout.factors, strict=True)):
        data[f"index{f}"] = np.asarray(fac.index, dtype=np.int32)
        if not fl.ones:
            data[f"Xg{f}"] = np.asarray(fac.X, dtype=float)
    return GlmmProblem(layout, data, tuple(priors.family))


# ---------------------------------------------------------------------------------------
# The log density (JAX)
# ---------------------------------------------------------------------------------------


def _prior_lp(slot: _Slot, x, data: dict):
    params = {n.rsplit(".", 1)[1]: data[n] for n in slot.params}
    return table.log_prob(slot.dist, params, x).sum()


def _corr_cholesky(raw, k: int):
    """Unconstrained ``k(k-1)/2`` vector -> Cholesky factor of a correlation matrix, log|J|."""
    t = table.corr_cholesky_transform()
    L = t(raw)
    return L, t.log_abs_det_jacobian(raw, L)


def _factor_T(fl: _FactorLayout, theta, data: dict, f: int):
    """``sd`` (K,), full Cholesky ``L`` (K, K), the prior+Jacobian log density of both."""
    import jax.numpy as jnp

    K = fl.n_terms
    log_sd = theta[fl.sd_slots[0].start: fl.sd_slots[0].start + K]
    sd = jnp.exp(log_sd)
    lp = log_sd.sum() + sum(_prior_lp(s, sd[k:k + 1], data) for k, s in enumerate(fl.sd_slots))
    L = jnp.eye(K, dtype=theta.dtype)
    pos = fl.lkj_start
    for cols, size in zip(fl.blocks, fl.lkj_sizes, strict=True):
        Lb, logjac = _corr_cholesky(theta[pos:pos + size], len(cols))
        lp = lp + logjac + table.lkj_cholesky_log_prob(Lb, data[f"eta{f}"])
        idx = np.asarray(cols)
        L = L.at[idx[:, None], idx[None, :]].set(Lb)
        pos += size
    return sd, L, lp


def _levels(fl: _FactorLayout, theta, sd, L, data: dict, f: int):
    """Group effects ``r`` (G, K) and the level coordinates' density (prior, in its space).

    ``fl.centred`` True: the coordinates are ``r``; False: ``z`` with ``r = T z``; None:
    the choice is data, ``data[f"centred{f}"]`` (1.0 or 0.0), and the program holds both
    forms and runs one (``lax.cond``), so that one compiled program serves both (see
    :meth:`GlmmLayout.generic`).
    """
    from jax import lax

    G, K = fl.n_levels, fl.n_terms
    u = theta[fl.level_start: fl.level_start + G * K].reshape(G, K)
    centred = functools.partial(_centred_levels, bool(fl.blocks))
    noncentred = functools.partial(_noncentred_levels, bool(fl.blocks))
    if fl.centred is None:
        return lax.cond(data[f"centred{f}"] > 0.5, centred, noncentred, u, sd, L)
    return (centred if fl.centred else noncentred)(u, sd, L)


def _centred_levels(blocks: bool, u, sd, L):
    """``r = u``; the density of ``r ~ N(0, T T')`` per level."""
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular

    T = sd[:, None] * L
    z = solve_triangular(T, u.T, lower=True).T if blocks else u / sd
    logdet = jnp.sum(jnp.log(sd)) + jnp.sum(jnp.log(jnp.diagonal(L)))
    return u, _std_normal_lp(z) - u.shape[0] * logdet


def _noncentred_levels(blocks: bool, u, sd, L):
    """``r = T u``; the density of ``u ~ N(0, I)``."""
    r = u @ (sd[:, None] * L).T if blocks else u * sd
    return r, _std_normal_lp(u)


def _std_normal_lp(z):
    import jax.numpy as jnp

    return -0.5 * jnp.sum(z * z) - 0.5 * z.size * np.log(2 * np.pi)


def _linear_predictor(layout: GlmmLayout, beta, rs: list, data: dict):
    eta = data["X"] @ beta + data["offset"]
    for f, (fl, r) in enumerate(zip(layout.factors, rs, strict=True)):
        gathered = r[data[f"index{f}"]]
        eta = eta + (gathered[:, 0] if fl.ones else (data[f"Xg{f}"] * gathered).sum(axis=1))
    return eta


def _bernoulli_logs(eta, link: str):
    """``log p`` and ``log(1 - p)`` for the inverse link."""
    import jax
    import jax.numpy as jnp
    from jax.scipy.special import log_ndtr

    if link == "logit":
        return jax.nn.log_sigmoid(eta), jax.nn.log_sigmoid(-eta)
    if link == "probit":
        return log_ndtr(eta), log_ndtr(-eta)
    mu = jnp.exp(eta)  # cloglog: p = 1 - exp(-exp(eta))
    return jnp.log(-jnp.expm1(-mu)), -mu


def _loglik_terms(layout: GlmmLayout, eta, fam: dict, data: dict):
    """Per-row log likelihood."""
    import jax
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from jax.scipy.special import gammaln

    y = data["y"]
    if layout.link == "logit" and layout.family in ("bernoulli", "binomial"):
        # y log p + (n - y) log(1 - p) = y eta - n softplus(eta): one transcendental a row
        n = data.get("trials", 1.0)
        out = y * eta - n * jax.nn.softplus(eta)
        if layout.family == "binomial":
            out = out + gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)
        return out
    if layout.family == "bernoulli":
        lp, l1p = _bernoulli_logs(eta, layout.link)
        return y * lp + (1.0 - y) * l1p
    if layout.family == "binomial":
        n = data["trials"]
        lp, l1p = _bernoulli_logs(eta, layout.link)
        log_choose = gammaln(n + 1.0) - gammaln(y + 1.0) - gammaln(n - y + 1.0)
        return log_choose + y * lp + (n - y) * l1p
    if layout.family == "poisson":
        return y * eta - jnp.exp(eta) - gammaln(y + 1.0)
    if layout.family == "negativebinomial":
        alpha = fam["alpha"]  # NB(mu = exp(eta), alpha), written on the log scale of mu
        log_total = jnp.logaddexp(eta, jnp.log(alpha))
        return (gammaln(y + alpha) - gammaln(alpha) - gammaln(y + 1.0)
                + y * (eta - log_total) + alpha * (jnp.log(alpha) - log_total))
    return dist.Normal(eta, fam["sigma"]).log_prob(y)


def _unpack(layout: GlmmLayout, theta, data: dict):
    """Unconstrained ``theta`` -> (beta, [sd], [L], [r], family dict, log density)."""
    import jax.numpy as jnp

    beta = theta[: layout.n_beta]
    lp = sum((_prior_lp(s, beta[s.start:s.stop], data) for s in layout.beta_slots),
             jnp.zeros((), theta.dtype))
    sds, Ls, rs = [], [], []
    for f, fl in enumerate(layout.factors):
        sd, L, lp_f = _factor_T(fl, theta, data, f)
        r, lp_r = _levels(fl, theta, sd, L, data, f)
        lp = lp + lp_f + lp_r
        sds.append(sd)
        Ls.append(L)
        rs.append(r)
    fam = {}
    for s in layout.family_slots:
        x = theta[s.start]
        fam[s.key.split(".", 1)[1]] = jnp.exp(x)
        lp = lp + x + _prior_lp(s, jnp.exp(x)[None], data)
    return beta, sds, Ls, rs, fam, lp


def log_density(layout: GlmmLayout, theta, data: dict):
    """Log posterior density of the unconstrained vector ``theta`` (Jacobians included)."""
    beta, _, _, rs, fam, lp = _unpack(layout, theta, data)
    eta = _linear_predictor(layout, beta, rs, data)
    return lp + _loglik_terms(layout, eta, fam, data).sum()


def _constrained(layout: GlmmLayout, theta, data: dict) -> dict:
    """The posterior's variables for one ``theta``."""
    beta, sds, Ls, rs, fam, _ = _unpack(layout, theta, data)
    out = {"beta": beta, **{f"fam.{k}": v for k, v in fam.items()}}
    for f, (sd, L, r) in enumerate(zip(sds, Ls, rs, strict=True)):
        out[f"sd{f}"], out[f"cor{f}"], out[f"r{f}"] = sd, L @ L.T, r
    return out


def _theta_xi(layout: GlmmLayout, xi, data: dict):
    return data["mode"] + (data["scale"] @ xi if layout.dense else data["scale"] * xi)


def _potential_fn_gen(layout: GlmmLayout):
    def gen(data: dict):
        def potential(xi):
            return -log_density(layout, _theta_xi(layout, xi, data), data)

        return potential

    return gen


# ---------------------------------------------------------------------------------------
# Compiled helpers (one per layout, reused within the process; data are arguments)
# ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _programs(layout: GlmmLayout) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    import_numpyro()  # before tracing: else traced twice (see import_numpyro)

    def neg(theta, data):
        return -log_density(layout, theta, data)

    def curvature(theta, data):
        """Per-level information ``sum_i w_i x_ik^2`` (G, K) of every factor, and sd."""
        beta, sds, _, rs, fam, _ = _unpack(layout, theta, data)
        eta = _linear_predictor(layout, beta, rs, data)

        def total(e):
            return _loglik_terms(layout, e, fam, data).sum()

        w = -jax.grad(lambda e: jax.grad(total)(e).sum())(eta)
        out = []
        for f, fl in enumerate(layout.factors):
            x2 = 1.0 if fl.ones else data[f"Xg{f}"] ** 2
            info = jax.ops.segment_sum(w[:, None] * x2 * jnp.ones((1, fl.n_terms)),
                                       data[f"index{f}"], num_segments=fl.n_levels)
            out.append((info, sds[f]))
        return out

    def rows(theta, data):
        """Curvature ``w`` of each row's log likelihood in the linear predictor, and the
        derivative of the row's linear predictor in each factor's level coordinates."""
        beta, sds, Ls, rs, fam, _ = _unpack(layout, theta, data)
        eta = _linear_predictor(layout, beta, rs, data)

        def total(e):
            return _loglik_terms(layout, e, fam, data).sum()

        w = -jax.grad(lambda e: jax.grad(total)(e).sum())(eta)
        grads = []
        for f, fl in enumerate(layout.factors):
            Xg = jnp.ones((eta.shape[0], 1), eta.dtype) if fl.ones else data[f"Xg{f}"]
            T = sds[f][:, None] * Ls[f]
            if fl.centred is None:  # dr/du: the identity (centred) or T (see _levels)
                T = jnp.where(data[f"centred{f}"] > 0.5, jnp.eye(fl.n_terms, dtype=T.dtype), T)
                grads.append(Xg @ T)
            else:
                grads.append(Xg if fl.centred else Xg @ T)
        return w, grads

    def hvp(theta, data, v):
        return jax.jvp(jax.grad(lambda t: neg(t, data)), (theta,), (v,))[1]

    def optimise(theta0, data):
        """L-BFGS (optax) to a loose tolerance: a warm start, not an estimate."""
        tol = 1e-3 * jnp.sqrt(jnp.asarray(data["y"].shape[0], theta0.dtype))
        return lbfgs_minimise(lambda t: neg(t, data), theta0, tol=tol, max_iter=500)

    def constrain(xis, data):
        return jax.vmap(lambda xi: _constrained(layout, _theta_xi(layout, xi, data), data))(xis)

    return {
        "value_and_grad": jax.jit(jax.value_and_grad(neg)),
        "curvature": jax.jit(curvature),
        "hvps": jax.jit(jax.vmap(hvp, in_axes=(None, None, 0))),
        "rows": jax.jit(rows),
        "constrain": jax.jit(constrain),
        "optimise": jax.jit(optimise),
    }


def clear_programs() -> None:
    """Forget this module's compiled programs (see :func:`bayesmixed.engines.clear_compiled`)."""
    _programs.cache_clear()


def _program(layout: GlmmLayout, name: str) -> Any:
    """Compiled program ``name`` of the layout's structure (:meth:`GlmmLayout.generic`).

    Call it with :func:`_flagged` data: the parametrisation of each factor is an argument,
    so a data set whose factors the engine centres differently reuses the programs.
    """
    return _programs(layout.generic())[name]


def _flagged(layout: GlmmLayout, data: dict) -> dict:
    """``data`` with each factor's parametrisation, ``centred{f}`` 1.0 or 0.0 (a new dict)."""
    out = dict(data)
    for f, fl in enumerate(layout.factors):
        if fl.centred is not None:
            out[f"centred{f}"] = np.asarray(1.0 if fl.centred else 0.0)
    return out


# ---------------------------------------------------------------------------------------
# Warm start: mode, centring per factor, Hessian-based scale
# ---------------------------------------------------------------------------------------


def _initial_theta(layout: GlmmLayout, data: dict) -> np.ndarray:
    theta = np.zeros(layout.dim)
    y = data["y"] / data.get("trials", 1.0)
    if layout.family == "gaussian":
        theta[layout.family_slots[0].start] = np.log(np.std(y) or 1.0)
        ones = np.all(data["X"] == 1, axis=0)
        if ones.any():
            theta[int(np.argmax(ones))] = np.mean(y)
    elif layout.link == "log":
        ones = np.all(data["X"] == 1, axis=0)
        if ones.any():
            theta[int(np.argmax(ones))] = np.log(np.mean(y) + 0.1)
    for fl in layout.factors:
        theta[fl.sd_slots[0].start: fl.sd_slots[0].start + fl.n_terms] = np.log(0.5)
    return theta


def _find_mode(layout: GlmmLayout, data: dict) -> np.ndarray:
    """Joint posterior mode in the non-centred parametrisation (compiled L-BFGS)."""
    theta0 = _initial_theta(layout, data)
    data = _flagged(layout, data)
    theta = np.asarray(_program(layout, "optimise")(theta0, data), dtype=float)
    vg = _program(layout, "value_and_grad")
    if not np.all(np.isfinite(theta)) or not np.isfinite(float(vg(theta, data)[0])):
        return theta0
    return theta


def _rebalanced(nc: GlmmLayout, layout: GlmmLayout, mode: np.ndarray,
                data: dict) -> np.ndarray:
    """A starting point in ``layout``'s coordinates from the non-centred joint mode.

    The joint mode inflates the SDs and leaves the group effects ``r`` nearly unshrunk
    (the offsets ``z`` are shrunk instead): each factor's SDs are reset by the method of
    moments, ``sd_k^2 = mean_j r_jk^2 - mean_j 1 / info_jk`` (the spread of the effects less
    their sampling variance, at least 1 % of the former), its correlations to those of
    ``r``; the level coordinates are then ``r`` (centred) or ``T^-1 r`` (non-centred).
    """
    at = {**data, "mode": mode, "scale": _identity(nc)}
    values = _program(nc, "constrain")(np.zeros((1, nc.dim)), _flagged(nc, at))
    curvature = _program(nc, "curvature")(mode, _base(_flagged(nc, data)))
    theta = mode.copy()
    for f, fl in enumerate(layout.factors):
        r = np.asarray(values[f"r{f}"][0], dtype=float)
        info = np.maximum(np.asarray(curvature[f][0], dtype=float), 1e-12)
        spread = np.mean(r ** 2, axis=0)
        sd = np.sqrt(np.maximum(spread - np.mean(1.0 / info, axis=0), 0.01 * spread))
        sd = np.maximum(sd, 1e-3)
        s0 = fl.sd_slots[0].start
        theta[s0: s0 + fl.n_terms] = np.log(sd)
        L = np.eye(fl.n_terms)
        pos = fl.lkj_start
        for cols, size in zip(fl.blocks, fl.lkj_sizes, strict=True):
            sub = r[:, cols] / sd[list(cols)]
            cor = np.corrcoef(sub, rowvar=False) if len(r) > 2 else np.eye(len(cols))
            cor = 0.9 * np.nan_to_num(cor) + 0.1 * np.eye(len(cols))  # shrink: keep it inside
            np.fill_diagonal(cor, 1.0)
            Lb = np.linalg.cholesky(cor)
            raw = prior_numpy.corr_cholesky_inverse(Lb)  # NumPy: no eager JAX dispatch
            theta[pos: pos + size] = raw
            L[np.ix_(cols, cols)] = Lb
            pos += size
        u = r if fl.centred else np.linalg.solve(sd[:, None] * L, r.T).T
        theta[fl.level_start: fl.level_start + fl.n_levels * fl.n_terms] = u.reshape(-1)
    return theta


def _base(data: dict) -> dict:
    """The data without the sampling map (the arguments of the helpers that ignore it)."""
    return {k: v for k, v in data.items() if k not in ("mode", "scale")}


def _identity(layout: GlmmLayout) -> np.ndarray:
    return np.eye(layout.dim) if layout.dense else np.ones(layout.dim)


def _structured_hessian(layout: GlmmLayout, theta: np.ndarray,
                        data: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """The diagonal of the Hessian ``H`` of the negative log density at ``theta`` and, for
    a ``layout.dense`` layout, ``H`` itself (else ``None``), from few Hessian-vector products.

    Levels of one factor share no rows, so one Hessian-vector product per (factor, term),
    with ones on that term's level coordinates, gives for every level ``j`` the column of
    ``H`` at ``(j, k)`` restricted to that level's own coordinates ``(j, m)``: the diagonal
    and, with group slopes, the couplings between the terms of one level (intercept and
    slope share the level's rows, so that ``K x K`` block is far from diagonal). Every
    other coordinate (common effects, SDs, correlations, family parameters) gets a product
    of its own, which is a whole column of ``H``. The couplings between levels of different
    factors, which come from the likelihood alone and are linear in the level coordinates,
    are added exactly from each row's curvature. The result is the exact Hessian.
    """
    hvps = _program(layout, "hvps")
    D = layout.dim
    probes, owners, level_terms = [], [], []
    level = np.zeros(D, dtype=bool)
    for fl in layout.factors:
        idx = fl.level_start + np.arange(fl.n_levels)[:, None] * fl.n_terms + np.arange(
            fl.n_terms)[None, :]  # (G, K): coordinate of level j, term k
        level[idx] = True
        for k in range(fl.n_terms):
            owners.append(idx[:, k])
            level_terms.append(idx)
    small = np.flatnonzero(~level)
    for idx in owners:
        v = np.zeros(D)
        v[idx] = 1.0
        probes.append(v)
    for d in small:
        v = np.zeros(D)
        v[d] = 1.0
        probes.append(v)
        owners.append(np.array([d]))
    Hv = np.asarray(hvps(theta, _base(_flagged(layout, data)), np.asarray(probes)),
                    dtype=float)
    diag = np.ones(D)
    for row, idx in zip(Hv, owners, strict=True):
        diag[idx] = row[idx]
    if not layout.dense:
        return diag, None
    H = np.diag(diag)
    for row, idx, block in zip(Hv, owners, level_terms, strict=False):
        for m in range(block.shape[1]):  # H[(j, m), (j, k)] for every level j
            H[block[:, m], idx] = row[block[:, m]]
    cols = Hv[len(Hv) - len(small):]  # (len(small), D): H[small, :]
    H[small, :] = cols
    H[:, small] = cols.T
    _add_cross_factor(layout, H, theta, data)
    return diag, 0.5 * (H + H.T)


def _scale(layout: GlmmLayout, theta: np.ndarray, data: dict) -> np.ndarray:
    """Preconditioner ``S`` at ``theta``: ``S S' = H^-1`` (dense) or ``diag(H)^-1/2``.

    ``H`` is :func:`_structured_hessian`'s. A direction of non-positive curvature (the
    point is a rebalanced mode, not a maximum) gets the scale of its curvature's absolute
    value, never more than :data:`MAX_SCALE`. (Dropping the within-level blocks of ``H``
    once made a direction of slope models look flat; its scale of hundreds threw the
    chains' starting points far into the tails, where they stuck.)
    """
    diag, H = _structured_hessian(layout, theta, data)
    floor = 1.0 / MAX_SCALE ** 2
    if H is not None and np.all(np.isfinite(H)):
        vals, vecs = np.linalg.eigh(H)
        if vals.max() > 0:
            vals = np.maximum(np.abs(vals), max(vals.max() * 1e-8, floor))
            return vecs / np.sqrt(vals)  # S S' = H^-1
    ok = np.isfinite(diag) & (diag > 0)
    return 1.0 / np.sqrt(np.maximum(np.where(ok, diag, 1.0), floor))


def _add_cross_factor(layout: GlmmLayout, H: np.ndarray, theta: np.ndarray,
                      data: dict) -> None:
    """Add to ``H`` the blocks coupling the levels of two different factors (in place)."""
    if len(layout.factors) < 2:
        return
    w, grads = _program(layout, "rows")(theta, _base(_flagged(layout, data)))
    w = np.asarray(w, dtype=float)
    grads = [np.asarray(g, dtype=float) for g in grads]
    for f, fa in enumerate(layout.factors):
        ia = data[f"index{f}"]
        for g in range(f + 1, len(layout.factors)):
            fb = layout.factors[g]
            ib = data[f"index{g}"]
            for k in range(fa.n_terms):
                for m in range(fb.n_terms):
                    block = np.zeros((fa.n_levels, fb.n_levels))
                    np.add.at(block, (ia, ib), w * grads[f][:, k] * grads[g][:, m])
                    r0 = fa.level_start + k
                    c0 = fb.level_start + m
                    H[r0: r0 + fa.n_levels * fa.n_terms: fa.n_terms,
                      c0: c0 + fb.n_levels * fb.n_terms: fb.n_terms] += block
                    H[c0: c0 + fb.n_levels * fb.n_terms: fb.n_terms,
                      r0: r0 + fa.n_levels * fa.n_terms: fa.n_terms] += block.T


#: a factor of group intercepts is centred when the median over its levels of
#: information x sd^2 is at least this
CENTRE_AT = 1.0

#: the same threshold for a factor with group slopes (the smallest over its terms): a slope's
#: SD is less well identified than an intercept's, its posterior reaches down to a fraction
#: of the estimate, where the centred form has a funnel (a bernoulli ``(x || g)`` with 20
#: rows per level and ``kappa`` 1.3 for the slope gave 20 divergences and ESS 150 centred)
CENTRE_SLOPES_AT = 4.0


def _choose_centring(layout: GlmmLayout, theta: np.ndarray, data: dict) -> tuple[bool, ...]:
    out = []
    for fl, (info, sd) in zip(layout.factors,
                              _program(layout, "curvature")(theta, _flagged(layout, data)),
                              strict=True):
        kappa = np.asarray(info) * np.asarray(sd)[None, :] ** 2
        at = CENTRE_AT if fl.ones else CENTRE_SLOPES_AT
        out.append(bool(np.median(kappa.min(axis=1)) >= at))
    return tuple(out)


def warm_start(problem: GlmmProblem, centring: str | tuple[bool, ...] = "auto") -> GlmmProblem:
    """Mode, parametrisation per factor and preconditioner: a problem ready for NUTS.

    Parameters
    ----------
    problem : GlmmProblem
        From :func:`prepare` (all factors non-centred).
    centring : {"auto", "centred", "noncentred"} or tuple of bool
        ``"auto"`` chooses per factor from the data (see the module docstring).
    """
    configure_jax()
    with one_blas_thread():  # small dense algebra: BLAS threads cost more than they give
        return _warm_start(problem, centring)


def _warm_start(problem: GlmmProblem, centring: str | tuple[bool, ...]) -> GlmmProblem:
    nc, data = problem.layout, problem.data
    mode = _rebalanced(nc, nc, _find_mode(nc, data), data)
    if centring == "auto":
        centred = _choose_centring(nc, mode, data)
    elif centring in ("centred", "noncentred"):
        centred = tuple(centring == "centred" for _ in nc.factors)
    else:
        centred = tuple(bool(c) for c in centring)
    layout = nc.with_centring(centred, nc.dense)
    theta = _rebalanced(nc, layout, mode, data)
    scale = _scale(layout, theta, data)
    return GlmmProblem(layout, {**_flagged(layout, data), "mode": theta, "scale": scale},
                       problem.family_names)


# ---------------------------------------------------------------------------------------
# The fit
# ---------------------------------------------------------------------------------------


def _initial_points(problem: GlmmProblem, rng: np.random.Generator, chains: int) -> np.ndarray:
    """Uniform(-1, 1) jitter about the mode in sampling space, halved until finite."""
    vg = _program(problem.layout, "value_and_grad")
    init = rng.uniform(-1.0, 1.0, size=(chains, problem.layout.dim))
    for c in range(chains):
        for _ in range(30):
            theta = np.asarray(_theta_xi(problem.layout, init[c], problem.data))
            if np.isfinite(float(vg(theta, _base(problem.data))[0])):
                break
            init[c] *= 0.5
    return init


def fit(design: Any, priors: Any, settings: Any, *,
             centring: str | tuple[bool, ...] = "auto") -> tuple[Any, float]:
    """Sample the full model with NUTS on the engine's JAX log density.

    Parameters
    ----------
    design : Design
    priors : PriorSet
    settings : SamplerSettings
    centring : {"auto", "centred", "noncentred"} or tuple of bool
        Parametrisation of each factor's group effects (``"auto"``: from the data).

    Returns
    -------
    tuple
        ``(idata, seconds)``: the DataTree with the full path's variables (common effects,
        ``sd_<g>``, ``cor_<g>``, ``r_<g>``, family parameters) and the wall time of the
        call. The posterior's attributes record ``compile_time``, ``sampling_time``,
        ``preparation_time`` and the parametrisation (``centred``: factor labels).
    """
    from bayesmixed.engines.nuts import run_nuts

    start = time.perf_counter()
    configure_jax()
    problem = warm_start(prepare(design, priors), centring)
    seeds = seed_sequence(settings.random_seed).spawn(3)
    init = _initial_points(problem, numpy_rng(seeds[0]), settings.chains)
    generic = problem.layout.generic()  # one sampler per structure, whatever the centring
    nuts = run_nuts(_potential_fn_gen(generic), problem.data, init, settings=settings,
                    seed=seeds[1], static_key=("glmm", generic))
    chains, draws, D = nuts.z.shape
    values = _program(problem.layout, "constrain")(nuts.z.reshape(-1, D), problem.data)
    values = {k: np.asarray(v).reshape(chains, draws, *np.shape(v)[1:])
              for k, v in values.items()}
    idata = _to_datatree(design, problem, values, nuts, settings)
    seconds = time.perf_counter() - start
    post = idata["posterior"]
    post.attrs["preparation_time"] = seconds - nuts.compile_seconds - nuts.sampling_seconds
    post.attrs["centred"] = ",".join(
        fl.label for fl in problem.layout.factors if fl.centred) or "none"
    return idata, seconds


def _to_datatree(design: Any, problem: GlmmProblem, values: dict, nuts: Any,
                 settings: Any) -> Any:
    from bayesmixed.engines.nuts import nuts_attrs

    common, layout = design.common, design.layout
    posterior: dict[str, np.ndarray] = {}
    for names in layout.common:
        v = values["beta"][..., common.term_slices[names.term]]
        posterior[names.var] = v if names.dim else v[..., 0]
    for f, (fac, fl) in enumerate(zip(design.factors, problem.layout.factors, strict=True)):
        names = layout.factor(fac.label)
        posterior[names.sd] = values[f"sd{f}"]
        if fl.blocks:
            posterior[names.cor] = values[f"cor{f}"]
        posterior[names.r] = values[f"r{f}"]
    for name in problem.family_names:
        posterior[layout.family[name]] = values[f"fam.{name}"]
    response = np.asarray(common.response)
    observed = response[:, 0] if problem.layout.family == "binomial" else response.reshape(-1)
    observed = {layout.response: observed}
    dims = {k: v for k, v in layout.dims().items() if k in posterior or k in observed}
    return to_datatree(posterior, nuts.stats, observed=observed, coords=layout.coords(),
                       dims=dims, attrs=nuts_attrs(nuts, settings, engine="glmm"))
