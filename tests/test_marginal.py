"""Exact marginalisation of Gaussian group effects (``bayesmixed.engines.marginal``).

Quick tests check the algebra against dense formulas (scipy, PyMC, numpyro); the ``slow``
ones check that the marginal and the full model give the same posterior, to Monte Carlo
error, on sleepstudy, penicillin (crossed: ``"auto"`` falls back to the full model) and a
simulated 3 x 3 block.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmixed as bm
from bayesmixed.engines import choose_engine, marginal
from bayesmixed.engines.common import SamplerSettings
from bayesmixed.errors import SamplingError


def _dense(design):
    """Dense response, X, Z (n x G K) of a one-factor design."""
    fac = design.factors[0]
    n, G, K = design.n, len(fac.levels), len(fac.terms)
    Z = np.zeros((n, G * K))
    for k in range(K):
        Z[np.arange(n), fac.index * K + k] = fac.X[:, k]
    return np.asarray(design.common.response, float), design.common.X, Z


def _random_cholesky(rng, K):
    if K == 1:
        return np.ones((1, 1))
    A = rng.normal(size=(K, 3 * K))
    C = np.corrcoef(A)
    return np.linalg.cholesky(C)


def simulate_block(seed=3, n_groups=40, per_group=12):
    rng = np.random.default_rng(seed)
    sd = np.array([1.0, 0.5, 0.8])
    cor = np.array([[1.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    effects = rng.multivariate_normal(np.zeros(3), np.outer(sd, sd) * cor, size=n_groups)
    g = np.repeat(np.arange(n_groups), per_group)
    x1, x2 = rng.normal(size=g.size), rng.normal(size=g.size)
    mu = (2 + effects[g, 0]) + (1 + effects[g, 1]) * x1 + (-0.5 + effects[g, 2]) * x2
    y = mu + rng.normal(scale=0.5, size=g.size)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": [f"G{i:02d}" for i in g]})


SMALL = {
    "slope": ("Reaction ~ Days + (Days | Subject)", "sleep"),
    "uncorrelated": ("Reaction ~ Days + (Days || Subject)", "sleep"),
    "intercept_only": ("Reaction ~ 1 + (1 | Subject)", "sleep"),
    "block3": ("y ~ x1 + x2 + (x1 + x2 | g)", "block"),
    "no_common": ("y ~ 0 + (x1 | g)", "block"),
}


def _small_data(kind):
    if kind == "sleep":
        df = bm.datasets.sleepstudy()
        return df[df["Subject"].isin(df["Subject"].unique()[:5])].reset_index(drop=True)
    return simulate_block(n_groups=6, per_group=5)


@pytest.mark.parametrize("form", ["entries", "matrices"])
@pytest.mark.parametrize("case", list(SMALL))
def test_marginal_loglik_equals_dense_mvn(case, form, monkeypatch):
    """Both forms of the group terms (written out entry by entry for small blocks, batched
    matrix products for larger ones) give the dense multivariate normal's density."""
    monkeypatch.setattr(marginal, "ENTRYWISE_MAX_TERMS", 3 if form == "entries" else 0)
    formula, kind = SMALL[case]
    model = bm.Model(formula, _small_data(kind))
    problem = marginal.prepare(model.design, model.priors)
    y, X, Z = _dense(model.design)
    rng = np.random.default_rng(1)
    K = len(model.design.factors[0].terms)
    for _ in range(3):
        beta = rng.normal(size=X.shape[1]) * 5 + np.linalg.lstsq(X, y, rcond=None)[0] if (
            X.shape[1]) else np.zeros(0)
        sd = rng.uniform(0.3, 30, size=K)
        L = _random_cholesky(rng, K)
        sigma = rng.uniform(0.5, 30)
        cov_b = np.kron(np.eye(len(model.design.factors[0].levels)),
                        (sd[:, None] * L) @ (sd[:, None] * L).T)
        V = sigma**2 * np.eye(len(y)) + Z @ cov_b @ Z.T
        expected = stats.multivariate_normal(X @ beta, V).logpdf(y)
        got = marginal.marginal_loglik(problem, beta, sd, L, sigma)
        assert got == pytest.approx(expected, rel=1e-10, abs=1e-8)


def test_group_effects_follow_their_exact_conditional():
    model = bm.Model("Reaction ~ Days + (Days | Subject)", _small_data("sleep"))
    problem = marginal.prepare(model.design, model.priors)
    y, X, Z = _dense(model.design)
    beta, sd, sigma = np.array([250.0, 10.0]), np.array([25.0, 6.0]), 26.0
    L = np.array([[1.0, 0.0], [0.3, np.sqrt(1 - 0.09)]])
    G, K = 5, 2
    T = sd[:, None] * L
    cov_b = np.kron(np.eye(G), T @ T.T)
    V = sigma**2 * np.eye(len(y)) + Z @ cov_b @ Z.T
    mean = (cov_b @ Z.T @ np.linalg.solve(V, y - X @ beta)).reshape(G, K)
    post_cov = np.linalg.inv(np.linalg.inv(cov_b) + Z.T @ Z / sigma**2)
    S = 20000
    r = marginal.draw_group_effects(
        problem, np.tile(beta, (S, 1)), np.tile(sd, (S, 1)), np.tile(L, (S, 1, 1)),
        np.full(S, sigma), np.random.default_rng(5),
    )
    assert r.shape == (S, G, K)
    sd_post = np.sqrt(np.diag(post_cov)).reshape(G, K)
    np.testing.assert_array_less(np.abs(r.mean(axis=0) - mean), 5 * sd_post / np.sqrt(S))
    emp = np.cov(r.reshape(S, G * K).T)
    np.testing.assert_allclose(emp, post_cov, atol=0.05 * np.max(np.diag(post_cov)))


def _lkj_matrix(rows):
    """The nested entries of ``corr_cholesky_entries`` as a (..., k, k) array."""
    shape = np.shape(rows[-1][-1])
    return np.stack([np.stack([np.broadcast_to(np.zeros(shape) if v is None else
                                               np.asarray(v, float), shape) for v in row],
                              axis=-1) for row in rows], axis=-2)


@pytest.mark.parametrize(("k", "eta"), [(2, 1.0), (3, 1.0), (3, 2.5), (4, 0.7), (5, 1.3)])
@pytest.mark.parametrize("xp_name", ["jax", "numpy"])
def test_lkj_cholesky_entries_equal_numpyro(k, eta, xp_name):
    """The entry-by-entry factor, Jacobian and density the marginal engine samples with
    equal numpyro's CorrCholeskyTransform and LKJCholesky (JAX and NumPy alike)."""
    import jax.numpy as jnp
    from numpyro.distributions import LKJCholesky
    from numpyro.distributions.transforms import CorrCholeskyTransform

    from bayesmixed import prior_numpy
    from bayesmixed import prior_table as table
    from bayesmixed.engines.common import configure_jax

    configure_jax()
    xp = jnp if xp_name == "jax" else np
    m = k * (k - 1) // 2
    xs = np.random.default_rng(k).normal(size=(5, m)) * 1.5
    rows, logjac, logprior = table.corr_cholesky_entries(xp.asarray(xs), k, xp.asarray(eta), xp)
    assert all(rows[i][j] is None for i in range(k) for j in range(i + 1, k))
    L = _lkj_matrix(rows)
    transform = CorrCholeskyTransform()
    L_ref = np.asarray(transform(jnp.asarray(xs)))
    np.testing.assert_allclose(L, L_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.sum(L**2, axis=-1), 1.0, rtol=1e-12)  # unit rows
    jac_ref = np.asarray(transform.log_abs_det_jacobian(jnp.asarray(xs), jnp.asarray(L_ref)))
    np.testing.assert_allclose(np.asarray(logjac), jac_ref, rtol=1e-12, atol=1e-12)
    prior_ref = np.asarray(LKJCholesky(k, eta).log_prob(jnp.asarray(L_ref)))
    np.testing.assert_allclose(np.asarray(logprior), prior_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(prior_numpy.corr_cholesky_inverse(L), xs, rtol=1e-8)


@pytest.mark.parametrize(("k", "eta"), [(3, 1.0), (4, 0.7)])
def test_lkj_cholesky_entries_jacobian_by_differences(k, eta):
    """The log |Jacobian| is that of ``x ->`` the strict lower triangle (by differences)."""
    from bayesmixed import prior_table as table

    m = k * (k - 1) // 2
    x0 = np.random.default_rng(k).normal(size=m)

    def strict_lower(x):
        return _lkj_matrix(table.corr_cholesky_entries(x, k, np.asarray(eta), np)[0])[
            np.tril_indices(k, -1)]

    h = 1e-6
    J = np.column_stack([(strict_lower(x0 + h * e) - strict_lower(x0 - h * e)) / (2 * h)
                         for e in np.eye(m)])
    logjac = table.corr_cholesky_entries(x0, k, np.asarray(eta), np)[1]
    assert logjac == pytest.approx(np.log(abs(np.linalg.det(J))), rel=1e-6, abs=1e-6)


# priors of every support kind on every slot (Uniform sigma: the logit transform)
TWIN_PRIORS = {
    "Intercept": bm.Prior("StudentT", nu=3, mu=250, sigma=50),
    "Days": bm.Prior("Laplace", mu=0, b=20),
    "sd(Intercept|Subject)": bm.Prior("Gamma", alpha=2, beta=0.05),
    "sd(Days|Subject)": bm.Prior("HalfStudentT", nu=4, sigma=10),
    "sigma": bm.Prior("Uniform", lower=0, upper=200),
    "cor(Subject)": 1.7,
}


@pytest.mark.parametrize(("case", "priors"), [
    ("slope", None), ("uncorrelated", None), ("block3", None), ("slope", TWIN_PRIORS),
    ("uncorrelated", {k: v for k, v in TWIN_PRIORS.items() if not k.startswith("cor")}),
], ids=["slope", "uncorrelated", "block3", "slope-mixed-priors", "uncorrelated-mixed-priors"])
def test_numpy_density_equals_the_sampled_jax_density(case, priors):
    """The density the mode search evaluates in NumPy is the one NUTS samples (JAX)."""
    formula, kind = SMALL[case]
    model = bm.Model(formula, _small_data(kind), priors=priors)
    problem = marginal.prepare(model.design, model.priors)
    density = marginal._Density.of(problem)
    assert density.numpy
    rng = np.random.default_rng(4)
    theta = problem.data["mode"] + rng.normal(size=(6, problem.dim)) @ problem.data["scale"].T
    stats_ = marginal._statistics(problem.data)
    jax_values = np.array([float(marginal._programs()["value_and_grad"](
        t, stats_, problem.layout)[0]) for t in theta])
    np.testing.assert_allclose(density.logp(theta), jax_values, rtol=1e-10)
    _, grad = marginal._programs()["value_and_grad"](theta[0], stats_, problem.layout)
    value_np, grad_np = density.value_and_grad(theta[0])
    assert value_np == pytest.approx(jax_values[0], rel=1e-12)
    np.testing.assert_allclose(grad_np, np.asarray(grad), rtol=1e-5,
                               atol=1e-6 * np.abs(np.asarray(grad)).max())
    beta, sd, L, sigma = marginal._constrained(theta, problem.data, problem.layout, np)
    ref = marginal._programs()["constrained"](theta, stats_, problem.layout)
    for ours, theirs in zip((beta, sd, L, sigma), ref, strict=True):
        np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-12, atol=1e-14)


def test_mode_search_compiles_nothing_and_matches_the_compiled_route(monkeypatch):
    """Small models find their mode and curvature in NumPy (no JAX program traced or
    compiled before sampling); larger ones with the compiled gradient, to the same point."""
    model = bm.Model("Reaction ~ Days + (Days | Subject)", bm.datasets.sleepstudy())
    marginal._programs.cache_clear()
    fast = marginal.prepare(model.design, model.priors)
    assert marginal._programs.cache_info().currsize == 0  # nothing compiled
    monkeypatch.setattr(marginal, "NUMPY_WORK", 0)
    compiled = marginal.prepare(model.design, model.priors)
    assert not marginal._Density.of(compiled).numpy
    assert marginal._programs.cache_info().currsize == 1
    # same mode; same curvature (the preconditioner's covariance) to a few percent
    np.testing.assert_allclose(fast.data["mode"], compiled.data["mode"], rtol=1e-4, atol=1e-4)
    cov_fast = fast.data["scale"] @ fast.data["scale"].T
    cov_compiled = compiled.data["scale"] @ compiled.data["scale"].T
    np.testing.assert_allclose(cov_fast, cov_compiled, rtol=0.02,
                               atol=0.02 * np.abs(cov_compiled).max())
    # near-Gaussian posterior on theta: the Laplace SD of log sigma is about 1/sqrt(2n)
    sd_log_sigma = np.sqrt(cov_fast[-1, -1])
    assert sd_log_sigma == pytest.approx(1 / np.sqrt(2 * 180), rel=0.15)


def _settings(**kw):
    return SamplerSettings(**{"draws": 50, "tune": 50, "chains": 2, "random_seed": 1, **kw})


def _engine(model, marginalize="auto", sampler="auto"):
    settings = choose_engine(model.design, model.priors, _settings(), sampler=sampler,
                             marginalize=marginalize)
    return settings.engine


def test_auto_uses_marginal_only_where_exact():
    sleep = bm.Model("Reaction ~ Days + (Days | Subject)", bm.datasets.sleepstudy())
    pen = bm.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", bm.datasets.penicillin())
    cbpp = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                    bm.datasets.cbpp())
    assert _engine(sleep) == "marginal"
    assert _engine(sleep, marginalize=False) == "glmm"  # the full model's JAX log density
    assert _engine(sleep, sampler="pymc") == "nuts"
    assert _engine(sleep, sampler="blackjax", marginalize=False) == "nuts"
    assert _engine(pen) == "glmm"
    assert "2 grouping factors" in marginal.supports(pen.design, pen.priors)
    assert "binomial" in marginal.supports(cbpp.design, cbpp.priors)
    with pytest.raises(SamplingError, match="2 grouping factors"):
        _engine(pen, marginalize=True)
    with pytest.raises(SamplingError, match="marginalize='yes'"):
        _engine(sleep, marginalize="yes")


def test_unsupported_prior_falls_back():
    data = bm.datasets.sleepstudy()
    model = bm.Model("Reaction ~ Days + (Days | Subject)", data,
                     priors={"sd(Days|Subject)": bm.Prior("Wald", mu=5, lam=10)})
    assert "Wald" in marginal.supports(model.design, model.priors)
    model = bm.Model("Reaction ~ Days + (Days | Subject)", data,
                     priors={"sigma": bm.Prior("Uniform", lower=0, upper=100)})
    assert marginal.supports(model.design, model.priors) is None


def test_marginal_fit_has_the_full_models_variables(sleepstudy):
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    fit = model.fit(draws=100, tune=150, chains=2, random_seed=3, marginalize=True)
    post = fit.idata["posterior"]
    assert post.attrs["marginalized"] == 1
    assert set(post.data_vars) == {"Intercept", "Days", "sd_Subject", "cor_Subject",
                                   "r_Subject", "sigma"}
    assert dict(post["r_Subject"].sizes) == {"chain": 2, "draw": 100, "Subject": 18,
                                             "Subject__term": 2}
    np.testing.assert_allclose(post["cor_Subject"].values[..., 1, 1], 1.0)
    assert set(fit.idata["sample_stats"].data_vars) >= {"diverging", "n_steps", "step_size"}
    assert fit.ranef()["Subject"].shape == (18, 8)
    again = model.fit(draws=100, tune=150, chains=2, random_seed=3, marginalize=True)
    np.testing.assert_array_equal(post["r_Subject"].values,
                                  again.idata["posterior"]["r_Subject"].values)
    assert again.idata["posterior"].attrs["compile_time"] < 1.0  # reused in-process


def test_progress_bar_runs_in_chunks(sleepstudy, capsys):
    model = bm.Model("Reaction ~ Days + (1 | Subject)", sleepstudy)
    quiet = model.fit(draws=40, tune=40, chains=2, random_seed=9, progressbar=False)
    shown = model.fit(draws=40, tune=40, chains=2, random_seed=9, progressbar=True)
    np.testing.assert_array_equal(quiet.idata["posterior"]["Days"].values,
                                  shown.idata["posterior"]["Days"].values)


# ---------------------------------------------------------------------------------------
# Statistical agreement of the marginal and full paths (slow)
# ---------------------------------------------------------------------------------------


def assert_same_posterior(a: pd.DataFrame, b: pd.DataFrame, z: float = 4.0) -> None:
    """Means agree within ``z`` Monte Carlo SEs, SDs within 15 %."""
    problems = []
    for label in a.index:
        ra, rb = a.loc[label], b.loc[label]
        mcse = np.hypot(ra["sd"] / np.sqrt(ra["ess_bulk"]), rb["sd"] / np.sqrt(rb["ess_bulk"]))
        if abs(ra["mean"] - rb["mean"]) > z * mcse:
            problems.append(f"{label}: mean {ra['mean']:.4g} vs {rb['mean']:.4g} (mcse {mcse:.3g})")
        if abs(ra["sd"] - rb["sd"]) > 0.15 * rb["sd"]:
            problems.append(f"{label}: sd {ra['sd']:.4g} vs {rb['sd']:.4g}")
    assert problems == []


def _fit_both(formula, data):
    model = bm.Model(formula, data)
    kw = {"draws": 1000, "tune": 1000, "chains": 4}
    marg = model.fit(random_seed=31, marginalize=True, **kw)
    full = model.fit(random_seed=32, marginalize=False, **kw)
    return marg, full


def _ranef_close(marg, full, label):
    rm, rf = marg.ranef()[label], full.ranef()[label]
    for term in rm.columns.levels[0]:
        diff = np.abs(rm[(term, "mean")] - rf[(term, "mean")])
        assert (diff < 0.2 * rf[(term, "sd")]).all(), term


@pytest.mark.slow
def test_marginal_agrees_with_full_on_sleepstudy():
    marg, full = _fit_both("Reaction ~ Days + (Days | Subject)", bm.datasets.sleepstudy())
    print("\n" + marg.summary().round(3).to_string() + "\n" + full.summary().round(3).to_string())
    assert marg.summary()["r_hat"].max() < 1.01
    assert_same_posterior(marg.summary(), full.summary())
    _ranef_close(marg, full, "Subject")


@pytest.mark.slow
def test_marginal_agrees_with_full_on_a_three_by_three_block():
    marg, full = _fit_both("y ~ x1 + x2 + (x1 + x2 | g)", simulate_block())
    print("\n" + marg.summary().round(3).to_string() + "\n" + full.summary().round(3).to_string())
    assert_same_posterior(marg.summary(), full.summary())
    _ranef_close(marg, full, "g")


@pytest.mark.slow
def test_crossed_penicillin_falls_back_to_the_full_model():
    model = bm.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", bm.datasets.penicillin())
    kw = {"draws": 1000, "tune": 1000, "chains": 4, "random_seed": 20}
    fit = model.fit(**kw)  # marginalize="auto"
    assert "marginalized" not in fit.idata["posterior"].attrs  # the full model ran
    full = model.fit(marginalize=False, **kw)
    np.testing.assert_array_equal(fit.idata["posterior"]["r_sample"].values,
                                  full.idata["posterior"]["r_sample"].values)
    table = fit.summary()
    print("\n" + table.round(3).to_string())
    # brms 2.18 (REFERENCE_RESULTS.md): 22.96 (0.83), sd(plate) 0.90, sd(sample) 2.21
    # (0.74, six levels: its mean moves with the prior), sigma 0.56
    assert abs(table.loc["Intercept", "mean"] - 22.96) < 0.3 * 0.83
    assert table.loc["sd(Intercept|plate)", "mean"] == pytest.approx(0.90, rel=0.15)
    assert table.loc["sd(Intercept|sample)", "mean"] == pytest.approx(2.21, rel=0.2)
    assert table.loc["sigma", "mean"] == pytest.approx(0.56, rel=0.1)


def test_nearly_noiseless_response_keeps_the_sampler_moving():
    """SBC data set 577 of ``sbc.py --seed 7``: true sigma 0.0017 made the Hessian at the mode
    indefinite in one direction; the preconditioner turned that into a scale of 1e4 and NUTS
    stalled (bulk ESS 1.3, x drifting to 354). Flat curvature now gets unit scale."""
    rng = np.random.default_rng([7, 577])
    truth = {
        "Intercept": rng.normal(), "x": rng.normal(), "sd0": abs(rng.normal()),
        "sd1": abs(rng.normal()), "rho": 2.0 * rng.beta(2.0, 2.0) - 1.0,
        "sigma": abs(rng.normal()),
    }
    sd = np.array([truth["sd0"], truth["sd1"]])
    cov = np.outer(sd, sd) * np.array([[1.0, truth["rho"]], [truth["rho"], 1.0]])
    effects = rng.multivariate_normal(np.zeros(2), cov, size=8)
    g = np.repeat(np.arange(8), 5)
    x = rng.normal(size=g.size)
    y = (truth["Intercept"] + effects[g, 0] + (truth["x"] + effects[g, 1]) * x
         + rng.normal(0.0, truth["sigma"], size=g.size))
    assert truth["sigma"] < 0.002
    data = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})
    priors = {"Intercept": bm.Prior("Normal", mu=0.0, sigma=1.0),
              "x": bm.Prior("Normal", mu=0.0, sigma=1.0),
              "sd(g)": bm.Prior("HalfNormal", sigma=1.0), "cor(g)": 2.0,
              "sigma": bm.Prior("HalfNormal", sigma=1.0)}
    model = bm.Model("y ~ x + (x | g)", data, priors=priors)
    problem = marginal.prepare(model.design, model.priors)
    scale = problem.data["scale"]
    assert np.linalg.eigvalsh(scale @ scale.T).max() < 100.0
    fit = model.fit(draws=400, tune=300, chains=1, target_accept=0.95, random_seed=7577)
    table = fit.summary()
    assert table["ess_bulk"].min() > 50
    assert abs(table.loc["x", "mean"] - truth["x"]) < 3.0
