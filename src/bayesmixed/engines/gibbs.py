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

Chains are placed by :func:`bayesmixed.engines.common.place_chains` (parallel on JAX
devices, vectorised, or one after the other); everything is float64. The posterior has the
same variables and names as the NUTS path (see ``build.py``).

Compilation. The sampler is one module-level program per model *structure* (numbers of
rows, columns, levels and terms, the blocks, the prior families, draws and tuning steps):
the data (response, designs, level indices, sufficient statistics, prior parameters and
starting values) are its arguments, never constants baked into it. Fits of new data sets
of the same shape reuse the compiled program (in-process; across processes through JAX's
persistent cache), and memory stays flat over many fits.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayesmixed import prior_table as table
from bayesmixed.engines.common import (
    SamplerSettings,
    configure_jax,
    jax_keys,
    place_chains,
    seed_sequence,
    to_datatree,
)
from bayesmixed.errors import PriorError, SamplingError

__all__ = ["SMALL", "fit", "supports"]

#: factors with at most this many levels x terms join the common effects' Gaussian block
SMALL = 250


def supports(design: Any, priors: Any) -> str | None:
    """Why the Gibbs sampler cannot run this model, or None when it can."""
    from bayesmixed.engines.common import row_varying_parameters

    common = design.common
    why = row_varying_parameters(design)
    if why:
        return f"sampler='gibbs' cannot run {why}"
    if design.family_name != "gaussian" or common.link_name != "identity":
        return "sampler='gibbs' needs family='gaussian' with the identity link"
    if set(common.family_priors) != {"sigma"}:
        return "sampler='gibbs' needs a Gaussian model whose only family parameter is sigma"
    for term, prior in priors.common.items():
        if prior.name != "Normal":
            return f"sampler='gibbs' needs Normal priors on common terms ({term} has {prior.name})"
    for label, prior in [*priors.sd.items(), *priors.family.items()]:
        if prior.name not in table.PRIORS or table.support(prior.name) != table.POSITIVE:
            return f"sampler='gibbs' does not support the {prior.name} prior of {label}"
        try:
            table.canonical(prior, label)
        except PriorError as err:
            return str(err)
    for fac in design.factors:
        for cols, _ in fac.subblocks:
            if len(fac.levels) <= 2 * len(cols) + 1:
                return (
                    f"sampler='gibbs' needs more than {2 * len(cols) + 1} levels of "
                    f"{fac.label!r} for a block of {len(cols)} column(s)"
                )
    return None


# ---------------------------------------------------------------------------------------
# Static structure (hashable: the compile key) and data (the compiled program's arguments)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BlockSpec:
    cols: tuple[int, ...]
    sd_priors: tuple[str, ...]  # prior family of each column's SD


@dataclass(frozen=True)
class _FactorSpec:
    label: str
    J: int
    K: int
    small: bool
    offset: int  # position in theta (small factors)
    blocks: tuple[_BlockSpec, ...]


@dataclass(frozen=True)
class _Structure:
    n: int
    p: int
    p_aug: int
    factors: tuple[_FactorSpec, ...]
    sigma_prior: str
    tune: int
    draws: int

    @property
    def large(self) -> tuple[_FactorSpec, ...]:
        return tuple(f for f in self.factors if not f.small)

    @property
    def small(self) -> tuple[_FactorSpec, ...]:
        return tuple(f for f in self.factors if f.small)

    @property
    def anchor(self) -> int:
        """The large factor drawn jointly with all of theta (the one with fewest levels)."""
        large = self.large
        return int(np.argmin([f.J for f in large])) if large else -1


def _canon(prior: Any, label: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(float(np.squeeze(v))) for k, v in
            table.canonical(prior, label).items()}


def _setup(design: Any, priors: Any, settings: SamplerSettings) -> tuple[_Structure, dict]:
    """Split factors, precompute sufficient statistics (numpy/scipy, sparse)."""
    from scipy import sparse

    common = design.common
    X = np.asarray(common.X, dtype=float)
    n, p = X.shape
    y = np.asarray(common.response, dtype=float) - design.offset  # offset(...) known
    specs: list[_FactorSpec] = []
    fdata: list[dict] = []
    offset = p
    for fac in design.factors:
        J, K = len(fac.levels), len(fac.terms)
        small = J * K <= SMALL
        blocks, bdata = [], []
        for cols, _corr in fac.subblocks:
            labels = [f"sd({fac.terms[c]}|{fac.label})" for c in cols]
            blocks.append(_BlockSpec(tuple(int(c) for c in cols),
                                     tuple(priors.sd[lab].name for lab in labels)))
            bdata.append({"sd": [_canon(priors.sd[lab], lab) for lab in labels],
                          "eta": np.asarray(float(priors.eta.get(fac.label, 1.0)))})
        specs.append(_FactorSpec(fac.label, J, K, small, offset if small else 0, tuple(blocks)))
        if small:
            offset += J * K
        fdata.append({"idx": np.asarray(fac.index, dtype=np.int64),
                      "Z": np.asarray(fac.X, dtype=float), "blocks": bdata})
    p_aug = offset
    # sparse augmented design [X | Z_small...]; only for sufficient statistics
    rows = [np.repeat(np.arange(n), p)]
    cols = [np.tile(np.arange(p), n)]
    vals = [X.reshape(-1)]
    for f, d in zip(specs, fdata, strict=True):
        if f.small:
            rows.append(np.repeat(np.arange(n), f.K))
            cols.append((f.offset + d["idx"][:, None] * f.K + np.arange(f.K)[None, :])
                        .reshape(-1))
            vals.append(d["Z"].reshape(-1))
    Xa = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, p_aug)
    )
    struct = _Structure(n, p, p_aug, tuple(specs), priors.family["sigma"].name,
                        settings.tune, settings.draws)
    large = struct.large
    anchor = large[struct.anchor] if large else None
    for f, d in zip(specs, fdata, strict=True):
        idx, Z = d["idx"], d["Z"]
        d["ZtZ"] = np.stack(
            [np.bincount(idx, weights=Z[:, a] * Z[:, b], minlength=f.J)
             for a in range(f.K) for b in range(f.K)], axis=-1
        ).reshape(f.J, f.K, f.K)
        if f.small:
            continue
        ind = sparse.csr_matrix((np.ones(n), (idx, np.arange(n))), shape=(f.J, n))
        use = Xa if f is anchor else Xa[:, :p]  # see the anchor in _sweep
        d["XaZ"] = np.stack(
            [(ind @ use.multiply(Z[:, [t]]).tocsr()).toarray() for t in range(f.K)], axis=-1
        )
    # Normal priors on the common effects, per column (tau etc. resolved by the table)
    m0 = np.zeros(p)
    s0 = np.ones(p)
    for term, sl in common.term_slices.items():
        canon = table.canonical(priors.common[term], term)
        width = sl.stop - sl.start
        m0[sl] = np.broadcast_to(np.asarray(canon["loc"], float), width)
        s0[sl] = np.broadcast_to(np.asarray(canon["scale"], float), width)
    # start: least squares for the common effects, zero group effects, modest covariances
    beta0 = np.linalg.lstsq(X, y, rcond=None)[0] if p else np.zeros(0)
    resid_var = float(np.var(y - X @ beta0)) if p else float(np.var(y))
    theta0 = np.zeros(p_aug)
    theta0[:p] = beta0
    data = {
        "y": y, "X": X, "XaXa": (Xa.T @ Xa).toarray(), "m0": m0, "s0": s0,
        "sigma_prior": _canon(priors.family["sigma"], "sigma"),
        "factors": fdata, "theta0": theta0, "resid_var": np.asarray(resid_var),
    }
    return struct, data


# ---------------------------------------------------------------------------------------
# One sweep and one chain (traced once per structure; data and keys are arguments)
# ---------------------------------------------------------------------------------------


def _sweep(S: _Structure, D: dict, state: Any, key: Any):
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_solve, solve_triangular

    n, p, p_aug = S.n, S.p, S.p_aug
    y, X, XaXa = D["y"], D["X"], D["XaXa"]
    factors, fdata = S.factors, D["factors"]
    large = [i for i, f in enumerate(factors) if not f.small]
    small = [i for i, f in enumerate(factors) if f.small]

    def gather(i, u):
        d = fdata[i]
        if factors[i].K == 1:
            return d["Z"][:, 0] * u[d["idx"], 0]
        return jnp.sum(d["Z"] * u[d["idx"]], axis=1)

    def seg(i, values):
        return jax.ops.segment_sum(values, fdata[i]["idx"], num_segments=factors[i].J)

    def u_small(i, theta):
        f = factors[i]
        return theta[f.offset : f.offset + f.J * f.K].reshape(f.J, f.K)

    def fixed_part(theta):
        """Xa @ theta: common effects plus small factors' contributions."""
        out = X @ theta[:p]
        for i in small:
            out = out + gather(i, u_small(i, theta))
        return out

    def Xa_t(r):
        """Xa' r."""
        parts = [X.T @ r] + [seg(i, fdata[i]["Z"] * r[:, None]).reshape(-1) for i in small]
        return jnp.concatenate(parts)

    def full_cov(i, Sigs):
        f = factors[i]
        Sigma = jnp.zeros((f.K, f.K))
        for b, Sig in zip(f.blocks, Sigs, strict=True):
            c = np.asarray(b.cols)
            Sigma = Sigma.at[jnp.ix_(c, c)].set(Sig)
        return Sigma

    def prior_precision(Sigmas):
        """Prior precision (diagonal blocks) and precision x mean of theta."""
        P = jnp.zeros((p_aug, p_aug)).at[jnp.arange(p), jnp.arange(p)].set(1.0 / D["s0"] ** 2)
        for i in small:
            f = factors[i]
            Sinv = jnp.linalg.inv(full_cov(i, Sigmas[i]))
            block = jnp.kron(jnp.eye(f.J), Sinv)
            sl = slice(f.offset, f.offset + f.J * f.K)
            P = P.at[sl, sl].set(block)
        pm = jnp.zeros(p_aug).at[:p].set(D["m0"] / D["s0"] ** 2)
        return P, pm

    def draw_gaussian(key, P, b):
        L = jnp.linalg.cholesky(P)
        mean = cho_solve((L, True), b)
        return mean + solve_triangular(L.T, jax.random.normal(key, b.shape), lower=False)

    def sd_log_prior(i, bi, sd):
        block, params = factors[i].blocks[bi], fdata[i]["blocks"][bi]["sd"]
        lp = 0.0
        for c, name in enumerate(block.sd_priors):
            lp = lp + table.log_prob(name, params[c], sd[c])
        return lp

    def block_log_prior(i, bi, sd, R):
        k = len(factors[i].blocks[bi].cols)
        lp = sd_log_prior(i, bi, sd)
        if k > 1:
            lp = lp + table.lkj_log_prob(R, fdata[i]["blocks"][bi]["eta"])
        return lp - k * jnp.sum(jnp.log(sd))  # Jacobian of (sd, R) -> Sigma

    def sample_cov(key, i, bi, u, Sigma_old):
        """Independence MH: propose Sigma ~ IW(J - k - 1, u'u), accept by the prior ratio."""
        ub = u[:, np.asarray(factors[i].blocks[bi].cols)]
        J, k = ub.shape
        Smat = ub.T @ ub + 1e-12 * jnp.eye(k)
        nu = J - k - 1
        k1, k2, k3 = jax.random.split(key, 3)
        Linv = jnp.linalg.cholesky(jnp.linalg.inv(Smat))  # Bartlett: W ~ Wishart(nu, S^-1)
        chi = jnp.sqrt(2.0 * jax.random.gamma(k1, (nu - jnp.arange(k)) / 2.0))
        A = jnp.tril(jax.random.normal(k2, (k, k)), -1) + jnp.diag(chi)
        LA = Linv @ A
        Sigma_new = jnp.linalg.inv(LA @ LA.T)

        def lp(Sig):
            sd = jnp.sqrt(jnp.diag(Sig))
            return block_log_prior(i, bi, sd, Sig / jnp.outer(sd, sd))

        accept = jnp.log(jax.random.uniform(k3)) < lp(Sigma_new) - lp(Sigma_old)
        return jnp.where(accept, Sigma_new, Sigma_old)

    theta, ubig, Sigmas, sigma2 = state
    ubig = list(ubig)
    Sigmas = [list(s) for s in Sigmas]
    n_keys = 4 + 2 * len(large) + 3 * sum(len(f.blocks) for f in factors)
    keys = iter(jax.random.split(key, n_keys))
    # 1. theta (+ each large factor, collapsed)
    P0, pm = prior_precision(Sigmas)
    contrib = [gather(i, u) for i, u in zip(large, ubig, strict=True)]
    total_big = sum(contrib) if large else jnp.zeros(n)
    if not large:
        theta = draw_gaussian(next(keys), P0 + XaXa / sigma2, pm + Xa_t(y) / sigma2)
    for li, fi in enumerate(large):
        f, d = factors[fi], fdata[fi]
        # the anchor factor is drawn jointly with all of theta; the others with the
        # common effects only (small factors' effects held fixed), which keeps the
        # cost at O(levels x p^2) instead of O(levels x |theta|^2)
        joint = li == S.anchor
        r = y - (total_big - contrib[li])
        if not joint and small:
            r = r - (fixed_part(theta) - X @ theta[:p])
        Sinv = jnp.linalg.inv(full_cov(fi, Sigmas[fi]))
        M = sigma2 * Sinv[None] + d["ZtZ"]
        Lm = jnp.linalg.cholesky(M)
        Ztr = seg(fi, d["Z"] * r[:, None])
        solve = jax.vmap(lambda L, B: cho_solve((L, True), B))
        Minv_ZXa = solve(Lm, jnp.swapaxes(d["XaZ"], 1, 2))  # (J, K, q)
        Minv_Ztr = solve(Lm, Ztr)
        q = p_aug if joint else p
        xr = Xa_t(r) if joint else X.T @ r
        P = P0[:q, :q] + (XaXa[:q, :q] - jnp.einsum("jpk,jkq->pq", d["XaZ"], Minv_ZXa)) / sigma2
        b = pm[:q] + (xr - jnp.einsum("jpk,jk->p", d["XaZ"], Minv_Ztr)) / sigma2
        draw = draw_gaussian(next(keys), P, b)
        theta = draw if joint else theta.at[:p].set(draw)
        rhs = Ztr - jnp.einsum("jpk,p->jk", d["XaZ"], draw)
        mean_u = solve(Lm, rhs)
        eps = jax.random.normal(next(keys), (f.J, f.K))
        noise = jax.vmap(lambda L, e: solve_triangular(L.T, e, lower=False))(Lm, eps)
        ubig[li] = mean_u + jnp.sqrt(sigma2) * noise
        new_c = gather(fi, ubig[li])
        total_big = total_big - contrib[li] + new_c
        contrib[li] = new_c
    # 2. covariances (centred MH) and SDs (non-centred, interweaving); the SD step
    # works from per-level sufficient statistics: one segment sum and one gather
    eta = fixed_part(theta) + total_big
    for fi, f in enumerate(factors):
        d = fdata[fi]
        u = u_small(fi, theta) if f.small else ubig[large.index(fi)]
        for bi, blk in enumerate(f.blocks):
            Sig = sample_cov(next(keys), fi, bi, u, Sigmas[fi][bi])
            sd = jnp.sqrt(jnp.diag(Sig))
            R = Sig / jnp.outer(sd, sd)
            cols = np.asarray(blk.cols)
            u_b = u[:, cols]
            u_std = u_b / sd
            ZtZ_b = d["ZtZ"][:, cols[:, None], cols[None, :]]  # (J, kb, kb)
            Ztr_b = seg(fi, d["Z"][:, cols] * (y - eta)[:, None])  # Z_b' (full residual)
            Ztr_b = Ztr_b + jnp.einsum("jab,jb->ja", ZtZ_b, u_b)  # + Z_b' c_b
            WtW = jnp.einsum("ja,jab,jb->ab", u_std, ZtZ_b, u_std)
            Wtr = jnp.sum(u_std * Ztr_b, axis=0)
            Pw = WtW / sigma2 + 1e-12 * jnp.eye(len(cols))
            sd_new = draw_gaussian(next(keys), Pw, Wtr / sigma2)
            ok = jnp.all(sd_new > 0) & (
                jnp.log(jax.random.uniform(next(keys)))
                < sd_log_prior(fi, bi, jnp.abs(sd_new)) - sd_log_prior(fi, bi, sd)
            )
            sd_use = jnp.where(ok, sd_new, sd)
            delta = u_std * (sd_use - sd)
            if len(cols) == 1:
                eta = eta + d["Z"][:, cols[0]] * delta[d["idx"], 0]
            else:
                eta = eta + jnp.sum(d["Z"][:, cols] * delta[d["idx"]], axis=1)
            u = u.at[:, cols].set(u_std * sd_use)
            Sigmas[fi][bi] = R * jnp.outer(sd_use, sd_use)
        if f.small:
            theta = theta.at[f.offset : f.offset + f.J * f.K].set(u.reshape(-1))
        else:
            ubig[large.index(fi)] = u
    # 3. sigma^2: propose from IG(n/2 - 1, RSS/2), accept by the prior ratio
    rss = jnp.sum((y - eta) ** 2)
    prop = (rss / 2.0) / jax.random.gamma(next(keys), n / 2.0 - 1.0)

    def lp_sigma(s2):
        s = jnp.sqrt(s2)
        return table.log_prob(S.sigma_prior, D["sigma_prior"], s) - jnp.log(s)

    accept = jnp.log(jax.random.uniform(next(keys))) < lp_sigma(prop) - lp_sigma(sigma2)
    sigma2 = jnp.where(accept, prop, sigma2)
    state = (theta, tuple(ubig), tuple(tuple(s) for s in Sigmas), sigma2)
    return state, state


def _chain(S: _Structure, D: dict, key: Any):
    """One chain: ``tune`` burn-in sweeps (not kept), then ``draws`` recorded sweeps."""
    import jax
    import jax.numpy as jnp

    resid_var = D["resid_var"]
    init = (
        D["theta0"],
        tuple(jnp.zeros((f.J, f.K)) for f in S.large),
        tuple(tuple(jnp.eye(len(b.cols)) * resid_var * 0.25 for b in f.blocks)
              for f in S.factors),
        resid_var,
    )
    keys = jax.random.split(key, S.tune + S.draws)

    def burn(state, k):
        return _sweep(S, D, state, k)[0], None

    def keep(state, k):
        return _sweep(S, D, state, k)

    state, _ = jax.lax.scan(burn, init, keys[: S.tune])  # keeps no burn-in draws
    _, trace = jax.lax.scan(keep, state, keys[S.tune :])
    return trace


@functools.lru_cache(maxsize=16)
def _program(S: _Structure, method: str) -> Any:
    """The compiled sampler for a structure and chain placement: ``(data, keys) -> trace``.

    Cached here (one traced function per structure) and by JAX (one executable per
    shapes); the data are arguments, so new data sets of the same shape reuse it.
    """
    import jax

    chain = functools.partial(_chain, S)
    if method == "parallel":
        return jax.pmap(chain, in_axes=(None, 0))
    if method == "vectorized":
        return jax.jit(jax.vmap(chain, in_axes=(None, 0)))
    return jax.jit(chain)


def clear_programs() -> None:
    """Forget this module's compiled programs (see :func:`bayesmixed.engines.clear_compiled`)."""
    _program.cache_clear()


def fit(design: Any, priors: Any, settings: SamplerSettings) -> tuple[Any, float]:
    """Run the blocked Gibbs sampler; return a DataTree like the NUTS path's and seconds.

    Parameters
    ----------
    design : Design
    priors : PriorSet
    settings : SamplerSettings
        ``draws``, ``tune`` (burn-in sweeps), ``chains``, ``random_seed`` and
        ``chain_method`` are used.
    """
    reason = supports(design, priors)
    if reason:
        raise SamplingError(reason + "; use sampler='numpyro'.")
    import jax

    configure_jax()
    start = time.perf_counter()
    struct, data = _setup(design, priors, settings)
    keys = jax_keys(seed_sequence(settings.random_seed).spawn(1)[0], settings.chains)
    method = place_chains(settings)
    program = _program(struct, method)
    if method == "sequential":
        traces = [jax.device_get(program(data, keys[c])) for c in range(settings.chains)]
        trace = jax.tree.map(lambda *xs: np.stack(xs), *traces)
    else:
        trace = jax.device_get(jax.block_until_ready(program(data, keys)))
    seconds = time.perf_counter() - start
    return _to_datatree(design, trace, struct, settings, seconds, method), seconds


def _to_datatree(design: Any, trace: Any, struct: _Structure, settings: SamplerSettings,
                 seconds: float, method: str):
    layout = design.layout
    theta, ubig, Sigmas, sigma2 = trace
    theta = np.asarray(theta)
    chains, draws = settings.chains, settings.draws
    posterior: dict[str, np.ndarray] = {}
    common = design.common
    for names in layout.common:
        sl = common.term_slices[names.term]
        posterior[names.var] = theta[..., sl] if names.dim else theta[..., sl.start]
    large = struct.large
    for fi, f in enumerate(struct.factors):
        fac = design.factor(f.label)
        names = layout.factor(f.label)
        Sigma = np.zeros((chains, draws, f.K, f.K))
        for b, Sig in zip(f.blocks, Sigmas[fi], strict=True):
            cols = np.asarray(b.cols)
            Sigma[..., cols[:, None], cols[None, :]] = np.asarray(Sig)
        sd = np.sqrt(np.diagonal(Sigma, axis1=-2, axis2=-1))
        posterior[names.sd] = sd
        if fac.correlated_blocks:
            posterior[names.cor] = Sigma / (sd[..., :, None] * sd[..., None, :])
        if f.small:
            u = theta[..., f.offset : f.offset + f.J * f.K].reshape(chains, draws, f.J, f.K)
        else:
            u = np.asarray(ubig[large.index(f)])
        posterior[names.r] = u
    posterior[layout.family["sigma"]] = np.sqrt(np.asarray(sigma2))
    observed = {layout.response: np.asarray(common.response, float)}
    dims = {k: v for k, v in layout.dims().items() if k in posterior or k in observed}
    return to_datatree(
        posterior,
        {"diverging": np.zeros((chains, draws), dtype=bool)},
        observed=observed,
        coords=layout.coords(),
        dims=dims,
        attrs={"inference_library": "bayesmixed.gibbs", "sampler": "gibbs",
               "sampling_time": seconds, "chain_method": method,
               "tuning_steps": settings.tune},
    )
