"""Exact blocked Gibbs sampler for large mixed models: Gaussian, and logit by Polya-Gamma.

For a Gaussian response with identity link every full conditional is Gaussian or close to
conjugate, so one sweep costs O(rows), needs no gradient and no step size, and never forms
a dense ``Z``. A bernoulli or binomial response with the logit link becomes such a model by
Polya-Gamma augmentation (Polson, Scott & Windle 2013): each sweep first draws
``omega_i ~ PG(n_i, eta_i)`` for every row (:mod:`bayesmixed.engines.polyagamma`), given
which the likelihood in the linear predictor is Gaussian with pseudo-response
``kappa_i / omega_i`` (``kappa_i = y_i - n_i / 2``), precision ``omega_i`` and no ``sigma``;
the same blocks are then drawn with the row weights ``omega``, whose sufficient statistics
(:func:`_stats`) are recomputed every sweep instead of once. The parameters are split into

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
   priors (SD priors and LKJ), then an interweaving step (ASIS, Yu & Meng 2011,
   :func:`_interweave_cholesky`) that redraws the covariance's Cholesky factor in the
   non-centred parameterisation, where its entries enter linearly (SDs and correlations
   move together; with one column it redraws the SD);
3. ``sigma`` by an inverse-gamma proposal accepted by the prior ratio (Gaussian only).

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
from bayesmixed.engines import polyagamma
from bayesmixed.engines.common import (
    SamplerSettings,
    configure_jax,
    jax_keys,
    place_chains,
    seed_sequence,
    to_datatree,
)
from bayesmixed.errors import PriorError, SamplingError

__all__ = ["LIKELIHOODS", "SMALL", "fit", "supports"]

#: factors with at most this many levels x terms join the common effects' Gaussian block
SMALL = 250

#: (family, link) pairs the sampler runs: Gaussian directly, logit ones by Polya-Gamma
LIKELIHOODS = (("gaussian", "identity"), ("bernoulli", "logit"), ("binomial", "logit"))


def supports(design: Any, priors: Any) -> str | None:
    """Why the Gibbs sampler cannot run this model, or None when it can."""
    from bayesmixed.engines.common import row_varying_parameters

    common = design.common
    why = row_varying_parameters(design)
    if why:
        return f"sampler='gibbs' cannot run {why}"
    family, link = design.family_name, common.link_name
    if (family, link) not in LIKELIHOODS:
        return ("sampler='gibbs' needs family='gaussian' with the identity link, or "
                f"'bernoulli' or 'binomial' with the logit link (not {family!r} with the "
                f"{link!r} link)")
    wanted = {"sigma"} if family == "gaussian" else set()
    if set(common.family_priors) != wanted:
        return (f"sampler='gibbs' needs a {family} model whose family parameters are "
                f"{sorted(wanted)} (not {sorted(common.family_priors)})")
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
    family: str  # "gaussian", or "bernoulli"/"binomial" (logit, Polya-Gamma augmented)
    sigma_prior: str | None
    trials_max: int  # the largest number of trials of a row (1 for bernoulli)
    tune: int
    draws: int

    @property
    def augmented(self) -> bool:
        """Whether the likelihood is a logit one, made Gaussian by Polya-Gamma weights."""
        return self.family != "gaussian"

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
    """Split factors, lay out the augmented design, precompute what does not change."""
    import jax
    import jax.numpy as jnp

    common = design.common
    X = np.asarray(common.X, dtype=float)
    n, p = X.shape
    family = design.family_name
    response = np.asarray(common.response, dtype=float)
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
    # the augmented design [X | Z_small...] row by row: its non-zero columns and values
    cols = [np.broadcast_to(np.arange(p), (n, p))]
    vals = [X]
    for f, d in zip(specs, fdata, strict=True):
        if f.small:
            cols.append(f.offset + d["idx"][:, None] * f.K + np.arange(f.K)[None, :])
            vals.append(d["Z"])
    trials = response[:, 1] if family == "binomial" else np.ones(n)
    struct = _Structure(
        n, p, p_aug, tuple(specs), family,
        priors.family["sigma"].name if family == "gaussian" else None,
        int(trials.max()) if n else 1, settings.tune, settings.draws)
    # Normal priors on the common effects, per column (tau etc. resolved by the table)
    m0 = np.zeros(p)
    s0 = np.ones(p)
    for term, sl in common.term_slices.items():
        canon = table.canonical(priors.common[term], term)
        width = sl.stop - sl.start
        m0[sl] = np.broadcast_to(np.asarray(canon["loc"], float), width)
        s0[sl] = np.broadcast_to(np.asarray(canon["scale"], float), width)
    data = {"X": X, "cols": np.concatenate(cols, axis=1), "vals": np.concatenate(vals, axis=1),
            "m0": m0, "s0": s0, "factors": fdata}
    theta0 = np.zeros(p_aug)
    if struct.augmented:
        # Polya-Gamma: omega ~ PG(n, eta); then pseudo-data kappa / omega with weights omega
        y = response[:, 0] if family == "binomial" else response.reshape(-1)
        data.update(kappa=y - trials / 2.0, trials=trials,
                    offset=np.asarray(design.offset, dtype=float), resid_var=np.asarray(1.0))
    else:
        y = response.reshape(-1) - design.offset  # offset(...) known
        # start: least squares for the common effects, zero group effects
        beta0 = np.linalg.lstsq(X, y, rcond=None)[0] if p else np.zeros(0)
        theta0[:p] = beta0
        resid_var = float(np.var(y - X @ beta0)) if p else float(np.var(y))
        stats = _stats(struct, data, jnp.ones(n))  # unweighted, once for all sweeps
        data.update(y=y, sigma_prior=_canon(priors.family["sigma"], "sigma"),
                    resid_var=np.asarray(resid_var),
                    stats=jax.tree.map(np.asarray, stats))
    data["theta0"] = theta0
    return struct, data


def _stats(S: _Structure, D: dict, w: Any) -> dict:
    """The sufficient statistics of the (weighted) Gaussian likelihood, row weights ``w``.

    ``XaXa = Xa' W Xa``; for every factor ``ZtZ[j] = Z_j' W Z_j`` per level ``j``; for every
    large factor ``XaZ[j] = X_j' W Z_j`` per level (all of ``Xa`` for the anchor factor,
    the common effects' ``X`` for the others: see :func:`_sweep`). Segment sums over the
    rows, never a dense ``Z``. The Gaussian sampler computes them once (``W = I``); the
    Polya-Gamma one every sweep, its weights being the ``omega`` just drawn.
    """
    import jax
    import jax.numpy as jnp

    X, cols, vals = D["X"], D["cols"], D["vals"]
    wvals = vals * w[:, None]
    if S.p_aug == S.p:
        XaXa = wvals.T @ X
    else:
        XaXa = jnp.zeros((S.p_aug, S.p_aug)).at[cols[:, :, None], cols[:, None, :]].add(
            wvals[:, :, None] * vals[:, None, :])
    ZtZ, XaZ = [], []
    for i, f in enumerate(S.factors):
        d = D["factors"][i]
        idx, Z = d["idx"], d["Z"]
        wZ = Z * w[:, None]
        ZtZ.append(jax.ops.segment_sum(wZ[:, :, None] * Z[:, None, :], idx, num_segments=f.J))
        if f.small:
            continue
        if i == S.factors.index(S.large[S.anchor]) and S.p_aug > S.p:
            XaZ.append(jnp.zeros((f.J, S.p_aug, f.K)).at[
                idx[:, None, None], cols[:, :, None], np.arange(f.K)[None, None, :]].add(
                wvals[:, :, None] * Z[:, None, :]))
        else:
            XaZ.append(jax.ops.segment_sum(wZ[:, None, :] * X[:, :, None], idx,
                                           num_segments=f.J))
    return {"XaXa": XaXa, "ZtZ": ZtZ, "XaZ": XaZ}


# ---------------------------------------------------------------------------------------
# One sweep and one chain (traced once per structure; data and keys are arguments)
# ---------------------------------------------------------------------------------------


def _sweep(S: _Structure, D: dict, state: Any, key: Any):
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_solve, solve_triangular

    n, p, p_aug = S.n, S.p, S.p_aug
    X = D["X"]
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
    n_keys = 4 + S.augmented + 2 * len(large) + 3 * sum(len(f.blocks) for f in factors)
    keys = iter(jax.random.split(key, n_keys))
    contrib = [gather(i, u) for i, u in zip(large, ubig, strict=True)]
    total_big = sum(contrib) if large else jnp.zeros(n)
    # 0. the likelihood as a weighted Gaussian one: "wy" is W y, "weigh" multiplies by W
    if S.augmented:  # omega ~ PG(trials, eta); then W = diag(omega), y = kappa / omega
        omega = polyagamma.draw(next(keys), D["trials"],
                                fixed_part(theta) + total_big + D["offset"],
                                b_max=S.trials_max)
        stats = _stats(S, D, omega)
        wy = D["kappa"] - omega * D["offset"]

        def weigh(v):
            return omega * v
    else:
        stats, wy = D["stats"], D["y"]

        def weigh(v):
            return v
    XaXa = stats["XaXa"]
    # 1. theta (+ each large factor, collapsed)
    P0, pm = prior_precision(Sigmas)
    if not large:
        theta = draw_gaussian(next(keys), P0 + XaXa / sigma2, pm + Xa_t(wy) / sigma2)
    for li, fi in enumerate(large):
        f, d = factors[fi], fdata[fi]
        # the anchor factor is drawn jointly with all of theta; the others with the
        # common effects only (small factors' effects held fixed), which keeps the
        # cost at O(levels x p^2) instead of O(levels x |theta|^2)
        joint = li == S.anchor
        r = total_big - contrib[li]  # the part of the linear predictor held fixed
        if not joint and small:
            r = r + (fixed_part(theta) - X @ theta[:p])
        wr = wy - weigh(r)  # W (y - fixed part)
        XaZ = stats["XaZ"][li]
        Sinv = jnp.linalg.inv(full_cov(fi, Sigmas[fi]))
        M = sigma2 * Sinv[None] + stats["ZtZ"][fi]
        Lm = jnp.linalg.cholesky(M)
        Ztr = seg(fi, d["Z"] * wr[:, None])
        solve = jax.vmap(lambda L, B: cho_solve((L, True), B))
        Minv_ZXa = solve(Lm, jnp.swapaxes(XaZ, 1, 2))  # (J, K, q)
        Minv_Ztr = solve(Lm, Ztr)
        q = p_aug if joint else p
        xr = Xa_t(wr) if joint else X.T @ wr
        P = P0[:q, :q] + (XaXa[:q, :q] - jnp.einsum("jpk,jkq->pq", XaZ, Minv_ZXa)) / sigma2
        b = pm[:q] + (xr - jnp.einsum("jpk,jk->p", XaZ, Minv_Ztr)) / sigma2
        draw = draw_gaussian(next(keys), P, b)
        theta = draw if joint else theta.at[:p].set(draw)
        rhs = Ztr - jnp.einsum("jpk,p->jk", XaZ, draw)
        mean_u = solve(Lm, rhs)
        eps = jax.random.normal(next(keys), (f.J, f.K))
        noise = jax.vmap(lambda L, e: solve_triangular(L.T, e, lower=False))(Lm, eps)
        ubig[li] = mean_u + jnp.sqrt(sigma2) * noise
        new_c = gather(fi, ubig[li])
        total_big = total_big - contrib[li] + new_c
        contrib[li] = new_c
    # 2. covariances (centred MH), then their Cholesky factors (non-centred, interweaving);
    # the second step works from per-level sufficient statistics: one segment sum, one gather
    eta = fixed_part(theta) + total_big
    for fi, f in enumerate(factors):
        d = fdata[fi]
        u = u_small(fi, theta) if f.small else ubig[large.index(fi)]
        for bi, blk in enumerate(f.blocks):
            Sig = sample_cov(next(keys), fi, bi, u, Sigmas[fi][bi])
            cols = np.asarray(blk.cols)
            u_b = u[:, cols]
            ZtZ_b = stats["ZtZ"][fi][:, cols[:, None], cols[None, :]]  # (J, kb, kb)
            Ztr_b = seg(fi, d["Z"][:, cols] * (wy - weigh(eta))[:, None])  # Z_b' W resid
            Ztr_b = Ztr_b + jnp.einsum("jab,jb->ja", ZtZ_b, u_b)  # + Z_b' c_b
            L_new, u_new = _interweave_cholesky(
                next(keys), Sig, u_b, ZtZ_b, Ztr_b, sigma2,
                functools.partial(block_log_prior, fi, bi))
            delta = u_new - u_b
            if len(cols) == 1:
                eta = eta + d["Z"][:, cols[0]] * delta[d["idx"], 0]
            else:
                eta = eta + jnp.sum(d["Z"][:, cols] * delta[d["idx"]], axis=1)
            u = u.at[:, cols].set(u_new)
            Sigmas[fi][bi] = L_new @ L_new.T
        if f.small:
            theta = theta.at[f.offset : f.offset + f.J * f.K].set(u.reshape(-1))
        else:
            ubig[large.index(fi)] = u
    # 3. sigma^2 (Gaussian): propose from IG(n/2 - 1, RSS/2), accept by the prior ratio
    if not S.augmented:
        rss = jnp.sum((wy - eta) ** 2)
        prop = (rss / 2.0) / jax.random.gamma(next(keys), n / 2.0 - 1.0)

        def lp_sigma(s2):
            s = jnp.sqrt(s2)
            return table.log_prob(S.sigma_prior, D["sigma_prior"], s) - jnp.log(s)

        accept = jnp.log(jax.random.uniform(next(keys))) < lp_sigma(prop) - lp_sigma(sigma2)
        sigma2 = jnp.where(accept, prop, sigma2)
    return theta, tuple(ubig), tuple(tuple(s) for s in Sigmas), sigma2


def _interweave_cholesky(key: Any, Sigma: Any, u: Any, ZtZ: Any, Ztr: Any, sigma2: Any,
                         log_prior: Any) -> tuple[Any, Any]:
    """One interweaving step (ASIS, Yu & Meng 2011) for a block's covariance.

    With the standardised effects ``zeta_j = L^-1 u_j`` held fixed, the entries of the
    lower-triangular Cholesky factor ``L`` of ``Sigma`` enter the linear predictor
    linearly (``u_j = L zeta_j``), so their weighted Gaussian likelihood is an exact
    Gaussian proposal (flat in ``L``); it is accepted by the ratio of the prior of ``L``:
    the prior of ``Sigma = L L'`` times the Jacobian ``prod_a L_aa^(k - a)``
    (``a = 0..k-1``), and ``L_aa > 0``. With one column this redraws the SD; with several,
    the SDs and correlations move together, which the centred step (``Sigma`` given the
    effects) does slowly when each level's effects are weakly identified.

    Parameters
    ----------
    key : jax.Array
        A PRNG key.
    Sigma : jax.Array
        The current covariance (k, k).
    u : jax.Array
        The block's group effects (J, k).
    ZtZ, Ztr : jax.Array
        Per level, ``Z_j' W Z_j`` (J, k, k) and ``Z_j' W (y - the rest of the linear
        predictor)`` (J, k): the block's own contribution is not subtracted.
    sigma2 : jax.Array
        The residual variance (1 for Polya-Gamma weights).
    log_prior : callable
        ``log_prior(sd, R)``: the log prior density of ``Sigma`` expressed by its SDs and
        correlation matrix.

    Returns
    -------
    tuple
        The new Cholesky factor (k, k) and the new effects (J, k).
    """
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_solve, solve_triangular

    k = u.shape[1]
    rows, cols = np.tril_indices(k)  # the free entries of L
    L = jnp.linalg.cholesky(Sigma)
    zeta = solve_triangular(L, u.T, lower=True).T  # (J, k)
    # u_j[rows[m]] gets l[m] zeta_j[cols[m]]: elementwise Gram and right-hand side
    zc = zeta[:, cols]  # (J, m)
    G = jnp.sum(zc[:, :, None] * ZtZ[:, rows[:, None], rows[None, :]] * zc[:, None, :],
                axis=0) / sigma2 + 1e-12 * jnp.eye(len(rows))
    h = jnp.sum(zc * Ztr[:, rows], axis=0) / sigma2
    k1, k2 = jax.random.split(key)
    chol = jnp.linalg.cholesky(G)
    l_new = cho_solve((chol, True), h) + solve_triangular(
        chol.T, jax.random.normal(k1, h.shape), lower=False)
    L_new = jnp.zeros((k, k)).at[rows, cols].set(l_new)

    def log_prior_L(Lc):
        Sg = Lc @ Lc.T
        sd = jnp.sqrt(jnp.diag(Sg))
        jac = jnp.sum((k - jnp.arange(k)) * jnp.log(jnp.abs(jnp.diagonal(Lc))))
        return log_prior(sd, Sg / jnp.outer(sd, sd)) + jac

    ok = jnp.all(jnp.diagonal(L_new) > 0) & (
        jnp.log(jax.random.uniform(k2)) < log_prior_L(L_new) - log_prior_L(L))
    L_use = jnp.where(ok, L_new, L)
    return L_use, zeta @ L_use.T


def _chain(S: _Structure, D: dict, key: Any):
    """One chain: ``tune`` burn-in sweeps (not kept), then ``draws`` recorded sweeps.

    ``Model.fit`` runs :data:`bayesmixed.engines.GIBBS_TUNE` burn-in sweeps unless ``tune``
    is given: the chain adapts nothing and forgets its start (common effects at least
    squares or zero, group effects zero, covariances ``resid_var / 4`` times the identity)
    within a few sweeps.
    """
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

    def step(carry, step_key):
        # one scan over burn-in and draws (the sweep is traced and compiled once); a
        # burn-in sweep writes to slot 0 of the trace, which the first kept one overwrites
        state, trace = carry
        i, k = step_key
        state = _sweep(S, D, state, k)
        slot = jnp.maximum(i - S.tune, 0)
        trace = jax.tree.map(
            lambda t, v: jax.lax.dynamic_update_index_in_dim(t, v, slot, 0), trace, state)
        return (state, trace), None

    trace = jax.tree.map(lambda v: jnp.zeros((S.draws, *jnp.shape(v)), jnp.result_type(v)),
                         init)
    (_, trace), _ = jax.lax.scan(step, (init, trace), (jnp.arange(S.tune + S.draws), keys))
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
    response = np.asarray(common.response, float)
    if struct.augmented:
        observed = {layout.response: response[:, 0] if struct.family == "binomial"
                    else response.reshape(-1)}
    else:
        posterior[layout.family["sigma"]] = np.sqrt(np.asarray(sigma2))
        observed = {layout.response: response}
    dims = {k: v for k, v in layout.dims().items() if k in posterior or k in observed}
    return to_datatree(
        posterior,
        {"diverging": np.zeros((chains, draws), dtype=bool)},
        observed=observed,
        coords=layout.coords(),
        dims=dims,
        attrs={"inference_library": "bayesmixed.gibbs", "sampler": "gibbs",
               "augmentation": "polya-gamma" if struct.augmented else "none",
               "sampling_time": seconds, "chain_method": method,
               "tuning_steps": settings.tune},
    )
