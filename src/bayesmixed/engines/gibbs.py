"""Exact blocked Gibbs sampler for Gaussian mixed models: tens of thousands of rows.

For a Gaussian response with identity link every full conditional is Gaussian or close to
conjugate, so one sweep costs O(rows), needs no gradient and no step size, and never forms
a dense ``Z``. The parameters are split into

* ``theta``: the common effects together with the group effects of every *small* factor
  (levels x terms <= ``SMALL``), one Gaussian vector;
* the group effects of each *large* factor;
* the covariance of each block (SDs and LKJ correlation), and ``sigma``.

One sweep:

1. for each large factor ``k``: draw ``(theta, r_k)`` jointly from their exact Gaussian
   conditional, ``r_k`` integrated out for ``theta`` (the *collapsed* update of
   Papaspiliopoulos, Roberts & Zanella 2020, Biometrika 107(1), which keeps crossed and
   nested factors and the intercept mixing well), from per-level sufficient statistics
   (``Z_j'Z_j`` and ``X_j'Z_j`` precomputed, ``Z_j'r_j`` by a segment sum). With no large
   factor, ``theta`` is drawn in one block;
2. each block's covariance by an independence Metropolis-Hastings step whose proposal is
   the inverse-Wishart conditional under a flat prior, accepted by the ratio of the actual
   priors (SD priors and LKJ), then an interweaving step (ASIS, Yu & Meng 2011) that
   redraws the SDs in the non-centred parameterisation, where they enter linearly;
3. ``sigma`` by an inverse-gamma proposal accepted by the prior ratio.

Chains run in parallel on JAX devices (``pmap``) or vectorised; everything is float64. The
posterior has the same variables and names as the NUTS path (see ``build.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesmixed.errors import SamplingError

__all__ = ["SMALL", "gibbs_supported", "sample_gibbs"]

#: factors with at most this many levels x terms join the common effects' Gaussian block
SMALL = 250

_SD_PRIORS = {"HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "HalfFlat"}


def gibbs_supported(design: Any, priors: Any) -> str | None:
    """Why the Gibbs sampler cannot run this model, or None when it can."""
    common = design.common
    if design.family_name != "gaussian" or common.link_name != "identity":
        return "sampler='gibbs' needs family='gaussian' with the identity link"
    for term, prior in priors.common.items():
        if prior.name != "Normal":
            return f"sampler='gibbs' needs Normal priors on common terms ({term} has {prior.name})"
    for label, prior in [*priors.sd.items(), *priors.family.items()]:
        if prior.name not in _SD_PRIORS:
            return f"sampler='gibbs' does not support the {prior.name} prior of {label}"
    for fac in design.factors:
        for cols, _ in fac.subblocks:
            if len(fac.levels) <= 2 * len(cols) + 1:
                return (
                    f"sampler='gibbs' needs more than {2 * len(cols) + 1} levels of "
                    f"{fac.label!r} for a block of {len(cols)} column(s)"
                )
    return None


@dataclass
class _Block:
    cols: np.ndarray
    sd_prior: list[tuple[str, dict[str, float]]]
    eta: float


@dataclass
class _Factor:
    label: str
    J: int
    K: int
    idx: Any  # (n,) level of each row
    Z: Any  # (n, K) block columns
    blocks: list[_Block]
    small: bool
    offset: int = 0  # position in theta (small factors)
    ZtZ: Any = None  # (J, K, K)
    XaZ: Any = None  # (J, p_aug, K) large factors


def _log_prior_sd(jnp, name: str, params: dict[str, float], x):
    """Log density (up to a constant) of a positive scale parameter."""
    if name == "HalfNormal":
        return -0.5 * (x / params["sigma"]) ** 2
    if name == "HalfStudentT":
        nu = params["nu"]
        return -(nu + 1) / 2 * jnp.log1p((x / params["sigma"]) ** 2 / nu)
    if name == "HalfCauchy":
        return -jnp.log1p((x / params["beta"]) ** 2)
    if name == "Exponential":
        return -params["lam"] * x
    return jnp.zeros_like(x)  # HalfFlat


def _setup(design: Any, priors: Any):
    """Split factors, precompute sufficient statistics (numpy/scipy, sparse)."""
    from scipy import sparse

    common = design.common
    X = common.X
    n, p = X.shape
    factors: list[_Factor] = []
    offset = p
    for fac in design.factors:
        J, K = len(fac.levels), len(fac.terms)
        blocks = []
        for cols, _corr in fac.subblocks:
            sd_prior = []
            for c in cols:
                pr = priors.sd[f"sd({fac.terms[c]}|{fac.label})"]
                sd_prior.append((pr.name, {k: float(np.squeeze(v)) for k, v in pr.params.items()}))
            blocks.append(_Block(np.asarray(cols), sd_prior, priors.eta.get(fac.label, 1.0)))
        factors.append(_Factor(fac.label, J, K, fac.index, fac.X, blocks, J * K <= SMALL))
    for f in factors:
        if f.small:
            f.offset = offset
            offset += f.J * f.K
    p_aug = offset
    # sparse augmented design [X | Z_small...]; only for sufficient statistics
    rows = [np.repeat(np.arange(n), p)]
    cols = [np.tile(np.arange(p), n)]
    vals = [X.reshape(-1)]
    for f in factors:
        if f.small:
            rows.append(np.repeat(np.arange(n), f.K))
            cols.append((f.offset + f.idx[:, None] * f.K + np.arange(f.K)[None, :]).reshape(-1))
            vals.append(f.Z.reshape(-1))
    Xa = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, p_aug)
    )
    XaXa = (Xa.T @ Xa).toarray()
    large = [f for f in factors if not f.small]
    anchor = large[int(np.argmin([f.J for f in large]))] if large else None
    for f in factors:
        f.ZtZ = np.stack(
            [np.bincount(f.idx, weights=f.Z[:, a] * f.Z[:, b], minlength=f.J)
             for a in range(f.K) for b in range(f.K)], axis=-1
        ).reshape(f.J, f.K, f.K)
        if f.small:
            continue
        ind = sparse.csr_matrix((np.ones(n), (f.idx, np.arange(n))), shape=(f.J, n))
        cols = Xa if f is anchor else Xa[:, :p]  # see the anchor in sample_gibbs
        f.XaZ = np.stack(
            [(ind @ cols.multiply(f.Z[:, [t]]).tocsr()).toarray() for t in range(f.K)], axis=-1
        )
    # Normal priors on the common effects, per column
    m0 = np.zeros(p)
    s0 = np.ones(p)
    for term, sl in common.term_slices.items():
        prior = priors.common[term]
        width = sl.stop - sl.start
        m0[sl] = np.broadcast_to(np.asarray(prior.params.get("mu", 0.0), float), width)
        s0[sl] = np.broadcast_to(np.asarray(prior.params["sigma"], float), width)
    return factors, p_aug, XaXa, m0, s0


def sample_gibbs(design: Any, priors: Any, settings: Any) -> tuple[Any, float]:
    """Run the blocked Gibbs sampler; return a DataTree like the NUTS path's and seconds.

    Parameters
    ----------
    design : Design
    priors : PriorSet
    settings : SamplerSettings
        ``draws``, ``tune`` (burn-in sweeps), ``chains``, ``random_seed`` and
        ``chain_method`` are used.
    """
    reason = gibbs_supported(design, priors)
    if reason:
        raise SamplingError(reason + "; use sampler='numpyro'.")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_solve, solve_triangular

    start = time.perf_counter()
    factors, p_aug, XaXa_np, m0, s0 = _setup(design, priors)
    common = design.common
    y_np = np.asarray(common.response, dtype=float) - design.offset  # offset(...) known
    n, p = common.X.shape
    y = jnp.asarray(y_np)
    X = jnp.asarray(common.X)
    XaXa = jnp.asarray(XaXa_np)
    for f in factors:
        f.idx = jnp.asarray(f.idx)
        f.Z = jnp.asarray(f.Z)
        f.ZtZ = jnp.asarray(f.ZtZ)
        if not f.small:
            f.XaZ = jnp.asarray(f.XaZ)
    small = [f for f in factors if f.small]
    large = [f for f in factors if not f.small]
    anchor = int(np.argmin([f.J for f in large])) if large else -1
    sig_prior = priors.family["sigma"]
    sig_name = sig_prior.name
    sig_params = {k: float(np.squeeze(v)) for k, v in sig_prior.params.items()}

    def gather(f, u):
        if f.K == 1:
            return f.Z[:, 0] * u[f.idx, 0]
        return jnp.sum(f.Z * u[f.idx], axis=1)

    def seg(f, values):
        return jax.ops.segment_sum(values, f.idx, num_segments=f.J)

    def u_small(f, theta):
        return theta[f.offset : f.offset + f.J * f.K].reshape(f.J, f.K)

    def fixed_part(theta):
        """Xa @ theta: common effects plus small factors' contributions."""
        out = X @ theta[:p]
        for f in small:
            out = out + gather(f, u_small(f, theta))
        return out

    def Xa_t(r):
        """Xa' r."""
        parts = [X.T @ r] + [seg(f, f.Z * r[:, None]).reshape(-1) for f in small]
        return jnp.concatenate(parts)

    def full_cov(f, Sigs):
        Sigma = jnp.zeros((f.K, f.K))
        for b, Sig in zip(f.blocks, Sigs):
            Sigma = Sigma.at[jnp.ix_(b.cols, b.cols)].set(Sig)
        return Sigma

    def prior_precision(Sigmas):
        """Prior precision (diagonal blocks) and precision x mean of theta."""
        P = jnp.zeros((p_aug, p_aug)).at[jnp.arange(p), jnp.arange(p)].set(1.0 / s0**2)
        for i, f in enumerate(factors):
            if f.small:
                Sinv = jnp.linalg.inv(full_cov(f, Sigmas[i]))
                block = jnp.kron(jnp.eye(f.J), Sinv)
                sl = slice(f.offset, f.offset + f.J * f.K)
                P = P.at[sl, sl].set(block)
        pm = jnp.zeros(p_aug).at[:p].set(m0 / s0**2)
        return P, pm

    def draw_gaussian(key, P, b):
        L = jnp.linalg.cholesky(P)
        mean = cho_solve((L, True), b)
        return mean + solve_triangular(L.T, jax.random.normal(key, b.shape), lower=False)

    def block_log_prior(block, sd, R):
        lp = 0.0
        for i, (name, params) in enumerate(block.sd_prior):
            lp = lp + _log_prior_sd(jnp, name, params, sd[i])
        k = len(block.cols)
        if k > 1 and block.eta != 1.0:
            lp = lp + (block.eta - 1.0) * jnp.linalg.slogdet(R)[1]
        return lp - k * jnp.sum(jnp.log(sd))  # Jacobian of (sd, R) -> Sigma

    def sd_log_prior(block, sd):
        lp = 0.0
        for i, (name, params) in enumerate(block.sd_prior):
            lp = lp + _log_prior_sd(jnp, name, params, sd[i])
        return lp

    def sample_cov(key, block, u, Sigma_old):
        """Independence MH: propose Sigma ~ IW(J - k - 1, u'u), accept by the prior ratio."""
        ub = u[:, block.cols]
        J, k = ub.shape
        S = ub.T @ ub + 1e-12 * jnp.eye(k)
        nu = J - k - 1
        k1, k2, k3 = jax.random.split(key, 3)
        Linv = jnp.linalg.cholesky(jnp.linalg.inv(S))  # Bartlett: W ~ Wishart(nu, S^-1)
        chi = jnp.sqrt(2.0 * jax.random.gamma(k1, (nu - jnp.arange(k)) / 2.0))
        A = jnp.tril(jax.random.normal(k2, (k, k)), -1) + jnp.diag(chi)
        LA = Linv @ A
        Sigma_new = jnp.linalg.inv(LA @ LA.T)

        def lp(Sig):
            sd = jnp.sqrt(jnp.diag(Sig))
            return block_log_prior(block, sd, Sig / jnp.outer(sd, sd))

        accept = jnp.log(jax.random.uniform(k3)) < lp(Sigma_new) - lp(Sigma_old)
        return jnp.where(accept, Sigma_new, Sigma_old)

    def sweep(state, key):
        theta, ubig, Sigmas, sigma2 = state
        ubig = list(ubig)
        Sigmas = [list(s) for s in Sigmas]
        n_keys = 4 + 2 * len(large) + 3 * sum(len(f.blocks) for f in factors)
        keys = iter(jax.random.split(key, n_keys))
        # 1. theta (+ each large factor, collapsed)
        P0, pm = prior_precision(Sigmas)
        contrib = [gather(f, u) for f, u in zip(large, ubig)]
        total_big = sum(contrib) if large else jnp.zeros(n)
        if not large:
            theta = draw_gaussian(next(keys), P0 + XaXa / sigma2, pm + Xa_t(y) / sigma2)
        for i, f in enumerate(large):
            fi = factors.index(f)
            # the anchor factor is drawn jointly with all of theta; the others with the
            # common effects only (small factors' effects held fixed), which keeps the
            # cost at O(levels x p^2) instead of O(levels x |theta|^2)
            joint = i == anchor
            r = y - (total_big - contrib[i])
            if not joint and small:
                r = r - (fixed_part(theta) - X @ theta[:p])
            Sinv = jnp.linalg.inv(full_cov(f, Sigmas[fi]))
            M = sigma2 * Sinv[None] + f.ZtZ
            Lm = jnp.linalg.cholesky(M)
            Ztr = seg(f, f.Z * r[:, None])
            solve = jax.vmap(lambda L, B: cho_solve((L, True), B))
            Minv_ZXa = solve(Lm, jnp.swapaxes(f.XaZ, 1, 2))  # (J, K, q)
            Minv_Ztr = solve(Lm, Ztr)
            q = p_aug if joint else p
            xr = Xa_t(r) if joint else X.T @ r
            P = P0[:q, :q] + (XaXa[:q, :q] - jnp.einsum("jpk,jkq->pq", f.XaZ, Minv_ZXa)) / sigma2
            b = pm[:q] + (xr - jnp.einsum("jpk,jk->p", f.XaZ, Minv_Ztr)) / sigma2
            draw = draw_gaussian(next(keys), P, b)
            theta = draw if joint else theta.at[:p].set(draw)
            rhs = Ztr - jnp.einsum("jpk,p->jk", f.XaZ, draw)
            mean_u = solve(Lm, rhs)
            eps = jax.random.normal(next(keys), (f.J, f.K))
            noise = jax.vmap(lambda L, e: solve_triangular(L.T, e, lower=False))(Lm, eps)
            ubig[i] = mean_u + jnp.sqrt(sigma2) * noise
            new_c = gather(f, ubig[i])
            total_big = total_big - contrib[i] + new_c
            contrib[i] = new_c
        # 2. covariances (centred MH) and SDs (non-centred, interweaving); the SD step
        # works from per-level sufficient statistics: one segment sum and one gather
        eta = fixed_part(theta) + total_big
        for fi, f in enumerate(factors):
            u = u_small(f, theta) if f.small else ubig[large.index(f)]
            for bi, b in enumerate(f.blocks):
                Sig = sample_cov(next(keys), b, u, Sigmas[fi][bi])
                sd = jnp.sqrt(jnp.diag(Sig))
                R = Sig / jnp.outer(sd, sd)
                cols = b.cols
                u_b = u[:, cols]
                u_std = u_b / sd
                ZtZ_b = f.ZtZ[:, cols[:, None], cols[None, :]]  # (J, kb, kb)
                Ztr_b = seg(f, f.Z[:, cols] * (y - eta)[:, None])  # Z_b' (full residual)
                Ztr_b = Ztr_b + jnp.einsum("jab,jb->ja", ZtZ_b, u_b)  # + Z_b' c_b
                WtW = jnp.einsum("ja,jab,jb->ab", u_std, ZtZ_b, u_std)
                Wtr = jnp.sum(u_std * Ztr_b, axis=0)
                Pw = WtW / sigma2 + 1e-12 * jnp.eye(len(cols))
                sd_new = draw_gaussian(next(keys), Pw, Wtr / sigma2)
                ok = jnp.all(sd_new > 0) & (
                    jnp.log(jax.random.uniform(next(keys)))
                    < sd_log_prior(b, jnp.abs(sd_new)) - sd_log_prior(b, sd)
                )
                sd_use = jnp.where(ok, sd_new, sd)
                delta = u_std * (sd_use - sd)
                if len(cols) == 1:
                    eta = eta + f.Z[:, cols[0]] * delta[f.idx, 0]
                else:
                    eta = eta + jnp.sum(f.Z[:, cols] * delta[f.idx], axis=1)
                u = u.at[:, cols].set(u_std * sd_use)
                Sigmas[fi][bi] = R * jnp.outer(sd_use, sd_use)
            if f.small:
                theta = theta.at[f.offset : f.offset + f.J * f.K].set(u.reshape(-1))
            else:
                ubig[large.index(f)] = u
        # 3. sigma^2: propose from IG(n/2 - 1, RSS/2), accept by the prior ratio
        rss = jnp.sum((y - eta) ** 2)
        prop = (rss / 2.0) / jax.random.gamma(next(keys), n / 2.0 - 1.0)

        def lp_sigma(s2):
            s = jnp.sqrt(s2)
            return _log_prior_sd(jnp, sig_name, sig_params, s) - jnp.log(s)

        accept = jnp.log(jax.random.uniform(next(keys))) < lp_sigma(prop) - lp_sigma(sigma2)
        sigma2 = jnp.where(accept, prop, sigma2)
        state = (theta, tuple(ubig), tuple(tuple(s) for s in Sigmas), sigma2)
        return state, state

    # start: least squares for the common effects, zero group effects, modest covariances
    beta0 = np.linalg.lstsq(common.X, y_np, rcond=None)[0] if p else np.zeros(0)
    resid_var = float(np.var(y_np - common.X @ beta0)) if p else float(np.var(y_np))
    theta0 = np.zeros(p_aug)
    theta0[:p] = beta0
    init = (
        jnp.asarray(theta0),
        tuple(jnp.zeros((f.J, f.K)) for f in large),
        tuple(tuple(jnp.eye(len(b.cols)) * resid_var * 0.25 for b in f.blocks) for f in factors),
        jnp.asarray(resid_var),
    )
    n_iter = settings.tune + settings.draws

    def run_chain(key):
        keys = jax.random.split(key, n_iter)

        def burn(state, k):
            return sweep(state, k)[0], None

        state, _ = jax.lax.scan(burn, init, keys[: settings.tune])  # keeps no burn-in draws
        _, trace = jax.lax.scan(sweep, state, keys[settings.tune :])
        return trace

    seed = settings.random_seed
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    chain_keys = jax.random.split(jax.random.PRNGKey(seed), settings.chains)
    method = settings.chain_method or (
        "parallel" if jax.local_device_count() >= settings.chains else "vectorized"
    )
    if method == "parallel" and jax.local_device_count() >= settings.chains:
        trace = jax.pmap(run_chain)(chain_keys)
    else:
        trace = jax.jit(jax.vmap(run_chain))(chain_keys)
    trace = jax.block_until_ready(trace)
    seconds = time.perf_counter() - start
    return _to_datatree(design, trace, factors, p, settings), seconds


def _to_datatree(design: Any, trace: Any, factors: list[_Factor], p: int, settings: Any):
    import xarray as xr

    from bayesmixed.layout import CHAIN, DRAW

    layout = design.layout
    theta, ubig, Sigmas, sigma2 = trace
    theta = np.asarray(theta)
    chains, draws = settings.chains, settings.draws
    coords: dict[str, Any] = {CHAIN: np.arange(chains), DRAW: np.arange(draws)}
    coords.update({k: v for k, v in layout.coords().items() if k != layout.obs_dim})
    dims = {k: (CHAIN, DRAW, *v) for k, v in layout.dims().items()}
    data: dict[str, Any] = {}
    common = design.common
    for names in layout.common:
        sl = common.term_slices[names.term]
        values = theta[..., sl] if names.dim else theta[..., sl.start]
        data[names.var] = (dims[names.var], values)
    large = [f for f in factors if not f.small]
    for fi, f in enumerate(factors):
        fac = design.factor(f.label)
        names = layout.factor(f.label)
        Sigma = np.zeros((chains, draws, f.K, f.K))
        for b, Sig in zip(f.blocks, Sigmas[fi]):
            Sigma[..., b.cols[:, None], b.cols[None, :]] = np.asarray(Sig)
        sd = np.sqrt(np.diagonal(Sigma, axis1=-2, axis2=-1))
        data[names.sd] = (dims[names.sd], sd)
        if fac.correlated_blocks:
            cor = Sigma / (sd[..., :, None] * sd[..., None, :])
            data[names.cor] = (dims[names.cor], cor)
        if f.small:
            u = theta[..., f.offset : f.offset + f.J * f.K].reshape(chains, draws, f.J, f.K)
        else:
            u = np.asarray(ubig[large.index(f)])
        data[names.r] = (dims[names.r], u)
    data[layout.family["sigma"]] = ((CHAIN, DRAW), np.sqrt(np.asarray(sigma2)))
    posterior = xr.Dataset(data, coords=coords)
    posterior.attrs.update({"inference_library": "bayesmixed.gibbs", "sampler": "gibbs"})
    observed = xr.Dataset(
        {layout.response: ((layout.obs_dim,), np.asarray(common.response, float))},
        coords={layout.obs_dim: np.arange(design.n)},
    )
    stats = xr.Dataset(
        {"diverging": ((CHAIN, DRAW), np.zeros((chains, draws), dtype=bool))},
        coords={CHAIN: coords[CHAIN], DRAW: coords[DRAW]},
    )
    return xr.DataTree.from_dict(
        {"posterior": posterior, "sample_stats": stats, "observed_data": observed}
    )
