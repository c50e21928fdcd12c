"""Laplace-approximate marginalisation of the group effects (``marginalize="laplace"``).

The approach of TMB/glmmTMB, INLA and Stan's embedded Laplace, on the log density of
:mod:`bayesmixed.engines.glmm`: NUTS samples the common effects, SDs, correlations and
family parameters ``phi`` only; the (non-centred) group effects ``z`` are integrated out by

.. math::

    \\log p(y, \\phi) \\approx \\log p(y, \\hat z, \\phi) + \\tfrac{D}{2} \\log 2\\pi
    - \\tfrac12 \\log |H|, \\qquad \\hat z = \\arg\\max_z \\log p(y, z, \\phi),

``H = I + J' W J`` the exact negative Hessian in ``z`` (``J`` the sparse derivative of the
linear predictor, ``W`` each row's likelihood curvature, assembled by a scatter over rows,
never a dense ``Z``). ``z_hat`` comes from a damped Newton solve that is not differentiated;
one more Newton step from it, which changes nothing at the optimum, carries the implicit
derivative ``dz_hat/dphi = H^-1 d(grad_z)/dphi`` into the gradient NUTS needs. For every
posterior draw of ``phi``, ``z`` is then drawn from ``N(z_hat, H^-1)``.

The approximation's error is measured, not assumed: the importance weights
``p(y, z, phi) / q(phi, z)`` of the draws (exact joint density over the approximate one)
are Pareto-smoothed; their shape ``k_hat`` (``fit.diagnostics().laplace_khat``) below 0.7
means the approximate posterior is close enough for importance sampling to correct it,
above it the approximation is poor (few observations per level of a bernoulli model, say):
fit the full model instead. For a Gaussian model (identity link) the approximation is exact.

Every array ``H`` is dense in the number of group-effect coordinates, which bounds the route
to :data:`MAX_LEVEL_COORDS` of them.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np

from bayesmixed.engines import glmm
from bayesmixed.engines.common import configure_jax, lbfgs_minimise, numpy_rng, seed_sequence

__all__ = ["MAX_LEVEL_COORDS", "PARETO_K_MAX", "fit", "supports"]

#: Group-effect coordinates (levels x terms over all factors) beyond which the route refuses.
MAX_LEVEL_COORDS = 2000

#: Pareto ``k_hat`` of the importance weights above which the approximation is flagged.
PARETO_K_MAX = 0.7

#: Newton iterations of the inner solve (each with up to ``_HALVINGS`` step halvings).
_NEWTON_MAX, _HALVINGS = 50, 12


def supports(design: Any, priors: Any) -> str | None:
    """``None`` when the Laplace route can run the model, else the reason why not."""
    if design.family_name not in (*glmm.CHOSEN_FAMILIES, "gaussian"):
        return f"family {design.family_name!r}"
    if not design.factors:
        return "no grouping factors to integrate out"
    why = glmm.supports(design, priors)
    if why is not None:
        return why
    coords = sum(len(f.levels) * len(f.terms) for f in design.factors)
    if coords > MAX_LEVEL_COORDS:
        return (f"{coords} group-effect coordinates (levels x terms), more than the "
                f"{MAX_LEVEL_COORDS} its dense inner Hessian allows")
    return None


# ---------------------------------------------------------------------------------------
# The approximate marginal density (JAX)
# ---------------------------------------------------------------------------------------


def _split(layout: glmm.GlmmLayout) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``theta`` of the outer coordinates ``phi`` and of the group effects."""
    level = np.zeros(layout.dim, dtype=bool)
    for fl in layout.factors:
        level[fl.level_start: fl.level_start + fl.n_levels * fl.n_terms] = True
    return np.flatnonzero(~level), np.flatnonzero(level)


def _theta(layout: glmm.GlmmLayout, phi, z):
    import jax.numpy as jnp

    outer, inner = _split(layout)
    theta = jnp.zeros(layout.dim, dtype=phi.dtype)
    return theta.at[outer].set(phi).at[inner].set(z)


def _positions(layout: glmm.GlmmLayout, data: dict):
    """``(n, sum K)``: each row's group-effect coordinates in ``z``, factor by factor."""
    import jax.numpy as jnp

    cols, offset = [], 0
    for f, fl in enumerate(layout.factors):
        K = fl.n_terms
        cols.append(offset + data[f"index{f}"][:, None] * K + jnp.arange(K)[None, :])
        offset += fl.n_levels * K
    return jnp.concatenate(cols, axis=1)


def _inner_hessian(layout: glmm.GlmmLayout, phi, z, data: dict):
    """``-d^2 log p(y, z, phi) / dz^2 = I + J' W J`` (exact: ``eta`` is linear in ``z``)."""
    import jax
    import jax.numpy as jnp

    theta = _theta(layout, phi, z)
    beta, sds, Ls, rs, fam, _ = glmm._unpack(layout, theta, data)
    eta = glmm._linear_predictor(layout, beta, rs, data)

    def total(e):
        return glmm._loglik_terms(layout, e, fam, data).sum()

    w = -jax.grad(lambda e: jax.grad(total)(e).sum())(eta)
    parts = []
    for f, fl in enumerate(layout.factors):
        Xg = jnp.ones((eta.shape[0], 1), eta.dtype) if fl.ones else data[f"Xg{f}"]
        parts.append(Xg @ (sds[f][:, None] * Ls[f]))  # d eta_i / d z_f[index_i]
    A = jnp.concatenate(parts, axis=1)
    P = _positions(layout, data)
    D = z.shape[0]
    H = jnp.zeros((D, D), dtype=z.dtype).at[P[:, :, None], P[:, None, :]].add(
        w[:, None, None] * A[:, :, None] * A[:, None, :])
    return H + jnp.eye(D, dtype=z.dtype)


def _newton(layout: glmm.GlmmLayout, phi, z0, data: dict):
    """The mode ``z_hat`` of ``log p(y, z, phi)`` in ``z``: damped Newton (concave in ``z``)."""
    import jax
    import jax.numpy as jnp
    from jax import lax
    from jax.scipy.linalg import cho_factor, cho_solve

    def f(z):
        return glmm.log_density(layout, _theta(layout, phi, z), data)

    grad = jax.grad(f)

    def step(carry):
        z, value, i, _ = carry
        g = grad(z)
        delta = cho_solve(cho_factor(_inner_hessian(layout, phi, z, data), lower=True), g)
        decrement = g @ delta  # Newton decrement squared

        def worse(c):
            t, v = c
            return (t > 2.0 ** -_HALVINGS) & ~(v >= value - 1e-12 * jnp.abs(value))

        def halve(c):
            t, _ = c
            return t * 0.5, f(z + 0.5 * t * delta)

        t, new = lax.while_loop(worse, halve, (jnp.ones((), z.dtype), f(z + delta)))
        ok = jnp.isfinite(new) & (new >= value - 1e-12 * jnp.abs(value))
        return (jnp.where(ok, z + t * delta, z), jnp.where(ok, new, value), i + 1,
                decrement)

    def more(carry):
        _, _, i, decrement = carry
        return (i < _NEWTON_MAX) & (decrement > 1e-12)

    inf = jnp.asarray(jnp.inf, z0.dtype)
    z, _, _, _ = lax.while_loop(more, step, (z0, f(z0), 0, inf))
    return z


def laplace_log_density(layout: glmm.GlmmLayout, phi, data: dict):
    """Laplace approximation of ``log p(y, phi)`` (``z`` integrated out), and ``z_hat``.

    Differentiable in ``phi``: the Newton solve is not differentiated; one Newton step from
    its result carries ``dz_hat / dphi`` (implicit differentiation).
    """
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_solve

    D = sum(fl.n_levels * fl.n_terms for fl in layout.factors)
    z_hat = jax.lax.stop_gradient(
        _newton(layout, jax.lax.stop_gradient(phi), jnp.zeros(D, phi.dtype), data))

    def f(z):
        return glmm.log_density(layout, _theta(layout, phi, z), data)

    H = _inner_hessian(layout, phi, z_hat, data)
    chol = jnp.linalg.cholesky(H)
    z = z_hat + cho_solve((chol, True), jax.grad(f)(z_hat))  # = z_hat, with its derivative
    chol = jnp.linalg.cholesky(_inner_hessian(layout, phi, z, data))
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return f(z) + 0.5 * D * np.log(2 * np.pi) - 0.5 * logdet, z_hat


def _phi_xi(layout: glmm.GlmmLayout, xi, data: dict):
    return data["mode"] + data["scale"] @ xi


@functools.lru_cache(maxsize=8)
def _programs(layout: glmm.GlmmLayout) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import solve_triangular

    from bayesmixed.engines.common import import_numpyro

    import_numpyro()  # before tracing: else traced twice (see import_numpyro)

    def neg(phi, data):
        return -laplace_log_density(layout, phi, data)[0]

    def draw(phi, eps, data):
        """``z ~ N(z_hat, H^-1)`` from standard normal ``eps``; the constrained values and
        the log importance weight ``log p(y, z, phi) - log q(phi) - log N(z)``."""
        lq, z_hat = laplace_log_density(layout, phi, data)
        chol = jnp.linalg.cholesky(_inner_hessian(layout, phi, z_hat, data))
        z = z_hat + solve_triangular(chol.T, eps, lower=False)  # cov = H^-1
        log_normal = (-0.5 * eps @ eps - 0.5 * eps.size * np.log(2 * np.pi)
                      + jnp.sum(jnp.log(jnp.diagonal(chol))))
        theta = _theta(layout, phi, z)
        log_w = glmm.log_density(layout, theta, data) - lq - log_normal
        return glmm._constrained(layout, theta, data), log_w

    def optimise(phi0, data):
        return lbfgs_minimise(lambda t: neg(t, data), phi0, tol=1e-4, max_iter=200)

    return {
        "neg": jax.jit(neg),
        "value_and_grad": jax.jit(jax.value_and_grad(neg)),
        "hessian": jax.jit(jax.hessian(neg)),
        "optimise": jax.jit(optimise),
        "draw": jax.jit(jax.vmap(draw, in_axes=(0, 0, None))),
        "newton": jax.jit(functools.partial(_newton, layout)),
    }


def _potential_fn_gen(layout: glmm.GlmmLayout):
    def gen(data: dict):
        def potential(xi):
            return -laplace_log_density(layout, _phi_xi(layout, xi, data), data)[0]

        return potential

    return gen


# ---------------------------------------------------------------------------------------
# Warm start and the fit
# ---------------------------------------------------------------------------------------


def warm_start(problem: glmm.GlmmProblem) -> tuple[glmm.GlmmLayout, dict]:
    """Mode of the approximate marginal density in ``phi`` and ``S`` with ``S S' = H^-1``."""
    configure_jax()
    layout, data = problem.layout, problem.data
    outer, _ = _split(layout)
    phi0 = glmm._initial_theta(layout, data)[outer]
    progs = _programs(layout)
    phi = np.asarray(progs["optimise"](phi0, data), dtype=float)
    if not (np.all(np.isfinite(phi)) and np.isfinite(float(progs["neg"](phi, data)))):
        phi = phi0
    H = np.asarray(progs["hessian"](phi, data), dtype=float)
    H = 0.5 * (H + H.T)
    scale = np.eye(phi.size)
    if np.all(np.isfinite(H)):
        vals, vecs = np.linalg.eigh(H)
        if vals.max() > 0:
            vals = np.maximum(np.abs(vals), max(vals.max() * 1e-8, 1.0 / glmm.MAX_SCALE ** 2))
            scale = vecs / np.sqrt(vals)
    return layout, {**data, "mode": phi, "scale": scale}


def pareto_khat(log_weights: np.ndarray) -> float:
    """Pareto-smoothed importance sampling's shape ``k_hat`` of the weights (ArviZ's
    ``psislw``, which takes the negated log weights, as for leave-one-out)."""
    from arviz_stats.base.array import array_stats

    _, khat = array_stats.psislw(-np.asarray(log_weights, dtype=float).reshape(-1))
    return float(khat)


def fit(design: Any, priors: Any, settings: Any) -> tuple[Any, float]:
    """Sample ``phi`` by NUTS on the Laplace-approximate marginal density, then ``z``.

    Parameters
    ----------
    design : Design
    priors : PriorSet
    settings : SamplerSettings

    Returns
    -------
    tuple
        ``(idata, seconds)``: the same variables as the full model's engines. The
        posterior's attributes add ``laplace_pareto_k`` (see :data:`PARETO_K_MAX`) and
        ``laplace_ess`` (the importance sampling's effective sample size).
    """
    from bayesmixed.engines.nuts import run_nuts

    start = time.perf_counter()
    configure_jax()
    problem = glmm.prepare(design, priors)
    layout, data = warm_start(problem)
    seeds = seed_sequence(settings.random_seed).spawn(3)
    rng = numpy_rng(seeds[0])
    init = rng.uniform(-1.0, 1.0, size=(settings.chains, data["mode"].size))
    nuts = run_nuts(_potential_fn_gen(layout), data, init, settings=settings, seed=seeds[1],
                    static_key=("laplace", layout))
    chains, draws, P = nuts.z.shape
    phis = data["mode"] + nuts.z.reshape(-1, P) @ data["scale"].T
    D = sum(fl.n_levels * fl.n_terms for fl in layout.factors)
    eps = numpy_rng(seeds[2]).standard_normal((phis.shape[0], D))
    base = {k: v for k, v in data.items() if k not in ("mode", "scale")}
    values, log_w = _programs(layout)["draw"](phis, eps, base)
    values = {k: np.asarray(v).reshape(chains, draws, *np.shape(v)[1:])
              for k, v in values.items()}
    log_w = np.asarray(log_w, dtype=float)
    wrapped = glmm.GlmmProblem(layout, data, problem.family_names)
    idata = glmm._to_datatree(design, wrapped, values, nuts, settings)
    post = idata["posterior"]
    post.attrs["engine"] = "laplace"
    finite = np.isfinite(log_w)
    post.attrs["laplace_pareto_k"] = pareto_khat(log_w[finite]) if finite.all() else np.inf
    w = np.exp(log_w[finite] - log_w[finite].max())
    post.attrs["laplace_ess"] = float(w.sum() ** 2 / (w ** 2).sum()) if w.size else 0.0
    seconds = time.perf_counter() - start
    post.attrs["preparation_time"] = seconds - nuts.compile_seconds - nuts.sampling_seconds
    return idata, seconds


def clear_programs() -> None:
    """Forget this module's compiled programs (see :func:`bayesmixed.engines.clear_compiled`)."""
    _programs.cache_clear()
