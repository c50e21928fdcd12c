"""The Laplace route (``marginalize="laplace"``, bayesmixed.engines.laplace)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmixed as bm
from bayesmixed.engines import glmm, laplace
from bayesmixed.engines.common import configure_jax
from bayesmixed.errors import SamplingError

configure_jax()  # float64, as the engine runs


def _data(seed: int = 0, n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": rng.normal(size=n),
        "g": rng.integers(0, 6, n).astype(str),
        "h": rng.integers(0, 4, n).astype(str),
    })
    df["y"] = rng.poisson(np.exp(0.5 + 0.3 * df["x"]))
    df["k"] = rng.integers(0, 2, n)
    df["w"] = 1.0 + 0.5 * df["x"] + rng.normal(size=n)
    return df


def _problem(formula: str, family: str):
    model = bm.Model(formula, _data(), family=family)
    problem = glmm.prepare(model.design, model.priors)
    outer, inner = laplace._split(problem.layout)
    phi = 0.3 * np.random.default_rng(3).normal(size=outer.size)
    return problem, phi, inner.size


def _joint(problem, phi, z):
    import jax.numpy as jnp

    layout = problem.layout
    return glmm.log_density(layout, laplace._theta(layout, jnp.asarray(phi), z), problem.data)


@pytest.mark.parametrize(("family", "formula"), [
    ("poisson", "y ~ x + (1 + x | g) + (1 | h)"),
    ("bernoulli", "k ~ x + (x || g) + (1 | h)"),
])
def test_inner_solve_matches_a_direct_optimiser(family, formula):
    """Newton's ``z_hat`` is scipy's L-BFGS optimum; its Hessian is JAX's exact one."""
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    problem, phi, D = _problem(formula, family)
    z_hat = np.asarray(laplace._programs(problem.layout)["newton"](
        jnp.asarray(phi), jnp.zeros(D), problem.data))
    grad = jax.jit(jax.grad(lambda z: -_joint(problem, phi, z)))
    res = minimize(lambda z: -float(_joint(problem, phi, jnp.asarray(z))), np.zeros(D),
                   jac=lambda z: np.asarray(grad(jnp.asarray(z))), method="L-BFGS-B",
                   options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 5000})
    np.testing.assert_allclose(z_hat, res.x, atol=1e-6)
    H = laplace._inner_hessian(problem.layout, jnp.asarray(phi), jnp.asarray(z_hat),
                               problem.data)
    exact = jax.hessian(lambda z: -_joint(problem, phi, z))(jnp.asarray(z_hat))
    np.testing.assert_allclose(np.asarray(H), np.asarray(exact), atol=1e-10)


def test_gradient_is_the_implicit_derivative():
    """The gradient of the approximate marginal density (through ``z_hat(phi)``) equals
    central finite differences."""
    import jax
    import jax.numpy as jnp

    problem, phi, _ = _problem("k ~ x + (x | g) + (1 | h)", "bernoulli")

    @jax.jit
    def value(p):
        return laplace.laplace_log_density(problem.layout, p, problem.data)[0]

    grad = np.asarray(jax.jit(jax.grad(value))(jnp.asarray(phi)))
    h = 1e-5
    fd = np.array([(float(value(jnp.asarray(phi + h * e)))
                    - float(value(jnp.asarray(phi - h * e)))) / (2 * h)
                   for e in np.eye(phi.size)])
    np.testing.assert_allclose(grad, fd, atol=1e-6 * max(1.0, np.abs(fd).max()))


def test_gaussian_model_is_integrated_exactly():
    """For a Gaussian model the approximation is the exact marginal density: the priors of
    ``phi`` plus the multivariate normal density of ``y`` (dense covariance)."""
    import jax.numpy as jnp
    from scipy.stats import multivariate_normal

    problem, phi, D = _problem("w ~ x + (1 + x | g)", "gaussian")
    layout, data = problem.layout, problem.data
    theta = np.asarray(laplace._theta(layout, jnp.asarray(phi), jnp.zeros(D)))
    beta, sds, Ls, _, fam, _ = glmm._unpack(layout, jnp.asarray(theta), data)
    eta = np.asarray(data["X"] @ np.asarray(beta))
    loglik0 = float(glmm._loglik_terms(layout, jnp.asarray(eta), fam, data).sum())
    prior_phi = float(_joint(problem, phi, jnp.zeros(D))) - loglik0 + 0.5 * D * np.log(
        2 * np.pi)
    fl = layout.factors[0]
    T = np.asarray(sds[0])[:, None] * np.asarray(Ls[0])
    Z = np.zeros((len(eta), D))  # dense Z T, for this check only
    rows = np.arange(len(eta))
    for k in range(fl.n_terms):
        Z[rows[:, None], data["index0"][:, None] * fl.n_terms + np.arange(fl.n_terms)] += (
            data["Xg0"][:, [k]] * T[k][None, :])
    cov = float(fam["sigma"]) ** 2 * np.eye(len(eta)) + Z @ Z.T
    exact = prior_phi + multivariate_normal(eta, cov).logpdf(data["y"])
    ours = float(laplace.laplace_log_density(layout, jnp.asarray(phi), data)[0])
    assert ours == pytest.approx(exact, abs=1e-8)


def test_pareto_khat_separates_light_and_heavy_weights():
    rng = np.random.default_rng(0)
    assert laplace.pareto_khat(0.1 * rng.normal(size=4000)) < 0.3
    heavy = np.log(rng.pareto(0.8, size=4000) + 1.0)  # tail index 0.8: k about 1.25
    assert laplace.pareto_khat(heavy) > laplace.PARETO_K_MAX


def test_chooser_runs_laplace_only_when_asked_and_says_why_not():
    from bayesmixed.engines import choose_engine
    from bayesmixed.engines.common import SamplerSettings

    model = bm.Model("y ~ x + (1 | g)", _data(), family="poisson")
    auto = choose_engine(model.design, model.priors, SamplerSettings())
    assert auto.engine == "glmm"
    chosen = choose_engine(model.design, model.priors, SamplerSettings(),
                           marginalize="laplace")
    assert chosen.engine == "laplace" and "Laplace" in chosen.engine_reason
    t_model = bm.Model("w ~ x + (1 | g)", _data(), family="t")
    with pytest.raises(SamplingError, match=r"marginalize='laplace' is not possible.*'t'"):
        choose_engine(t_model.design, t_model.priors, SamplerSettings(),
                      marginalize="laplace")
    with pytest.raises(SamplingError, match="'auto', True, False or 'laplace'"):
        choose_engine(model.design, model.priors, SamplerSettings(), marginalize="laplce")
    many = pd.DataFrame({"y": np.arange(3000) % 3, "g": np.arange(3000).astype(str)})
    big = bm.Model("y ~ 1 + (1 | g)", many, family="poisson")
    assert "3000 group-effect coordinates" in laplace.supports(big.design, big.priors)


def _rich(seed: int = 4) -> pd.DataFrame:
    """Poisson counts, 10 levels x 40 rows: the regime where Laplace is accurate."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(10), 40)
    x = rng.normal(size=g.size)
    r = rng.normal(size=(10, 2)) * np.array([0.5, 0.3])
    y = rng.poisson(np.exp(0.8 + r[g, 0] + (0.4 + r[g, 1]) * x))
    return pd.DataFrame({"y": y, "x": x, "g": [f"G{i}" for i in g]})


@pytest.fixture(scope="module")
def laplace_fits():
    model = bm.Model("y ~ x + (1 + x | g)", _rich(), family="poisson")
    kw = {"draws": 500, "tune": 500, "chains": 2, "random_seed": 4}
    return model, model.fit(marginalize="laplace", **kw), model.fit(**kw)


def test_laplace_fit_agrees_with_the_full_model(laplace_fits):
    """Same variables as the full model's engine; means within Monte Carlo error plus the
    approximation's small bias; a good Pareto k_hat reported by fit.diagnostics()."""
    import arviz as az

    _, ours, full = laplace_fits
    assert ours.settings.engine == "laplace" and full.settings.engine == "glmm"
    a = ours.idata["posterior"].to_dataset()
    b = full.idata["posterior"].to_dataset()
    assert sorted(a.data_vars) == sorted(b.data_vars)
    for name in b.data_vars:
        assert a[name].dims == b[name].dims
    se_a, se_b = az.mcse(a), az.mcse(b)
    for name in ["Intercept", "x", "sd_g", "cor_g", "r_g"]:
        diff = np.abs(a[name].mean(("chain", "draw")) - b[name].mean(("chain", "draw")))
        limit = 4.5 * np.sqrt(se_a[name] ** 2 + se_b[name] ** 2) + 0.1 * b[name].std(
            ("chain", "draw"))
        assert bool((diff <= limit).all()), name
    diag = ours.diagnostics()
    assert diag.laplace_khat is not None and diag.laplace_khat < laplace.PARETO_K_MAX
    assert "Laplace approximation: Pareto k_hat" in repr(diag)
    assert "(numpyro NUTS, group effects Laplace-approximated)" in repr(ours)
    assert full.diagnostics().laplace_khat is None
    assert ours.summary()["r_hat"].max() < 1.05


def test_laplace_fit_refits_on_the_same_route(laplace_fits):
    _, ours, _ = laplace_fits
    refit = ours.update(data=_rich(5), draws=100, tune=100)
    assert refit.settings.engine == "laplace"
    assert refit.ranef()["g"].shape[0] == 10
