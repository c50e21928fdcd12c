"""The JAX engine for the full model (bayesmixed.engines.glmm): density, outputs, centring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmixed as bm
from bayesmixed.engines import glmm
from bayesmixed.engines.common import configure_jax

configure_jax()  # float64, as the engine runs


def _data(seed: int = 0, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "x": rng.normal(size=n),
        "g": rng.integers(0, 6, n).astype(str),
        "h": rng.integers(0, 4, n).astype(str),
    })
    df["y"] = rng.poisson(2, size=n)
    df["k"] = rng.integers(0, 2, n)
    df["f"] = rng.integers(0, 5, n)
    return df


CASES = [
    ("poisson", "y ~ x + (1 + x | g) + (1 | h)"),
    ("bernoulli", "k ~ x + (x || g) + (1 | h)"),
    ("negativebinomial", "y ~ x + (1 + x | g)"),
    ("binomial", "cbind(y, f) ~ x + (1 | g)"),
    ("gaussian", "x ~ (1 | g) + (1 | h)"),
]


def _pymc_point(model, problem, theta):
    """PyMC's value variables for the engine's (non-centred) ``theta``."""
    import jax.numpy as jnp

    layout, design = problem.layout, model.design
    vals = glmm._constrained(layout, jnp.asarray(theta), problem.data)
    point = {}
    names = design.layout
    beta = np.asarray(vals["beta"])
    for term in names.common:
        sl = design.common.term_slices[term.term]
        point[term.var] = beta[sl] if term.dim else beta[sl.start]
    for f, (fac, fl) in enumerate(zip(design.factors, layout.factors, strict=True)):
        fn = names.factor(fac.label)
        sd = np.asarray(vals[f"sd{f}"])
        start = fl.level_start
        point[fn.z] = theta[start:start + fl.n_levels * fl.n_terms].reshape(
            fl.n_levels, fl.n_terms)
        point[fn.sd] = sd
        for k, piece in enumerate(fn.sd_pieces):
            point[piece] = sd[k]
        L = np.linalg.cholesky(np.asarray(vals[f"cor{f}"]))
        for chol, cols in zip(fn.chol, fl.blocks, strict=True):
            point[chol] = L[np.ix_(cols, cols)]
    for name in problem.family_names:
        point[names.family[name]] = float(vals[f"fam.{name}"])
    return point


def _jacobian(layout, theta) -> float:
    import jax.numpy as jnp

    out = 0.0
    for fl in layout.factors:
        out += theta[fl.sd_slots[0].start: fl.sd_slots[0].start + fl.n_terms].sum()
        pos = fl.lkj_start
        for cols, size in zip(fl.blocks, fl.lkj_sizes, strict=True):
            out += float(glmm._corr_cholesky(jnp.asarray(theta[pos:pos + size]), len(cols))[1])
            pos += size
    return out + sum(theta[s.start] for s in layout.family_slots)


@pytest.mark.parametrize(("family", "formula"), CASES)
def test_log_density_equals_pymc(family, formula):
    """At random points the engine's density is PyMC's ``model.logp()`` (to 1e-8)."""
    model = bm.Model(formula, _data(), family=family)
    pm_model = model.build()
    logp = pm_model.compile_logp(jacobian=False)
    problem = glmm.prepare(model.design, model.priors)
    rng = np.random.default_rng(1)
    for _ in range(3):
        theta = 0.5 * rng.normal(size=problem.layout.dim)
        point = _pymc_point(model, problem, theta)
        values = {}
        for rv in pm_model.free_RVs:
            value = np.asarray(point[rv.name], dtype=float)
            transform = pm_model.rvs_to_transforms.get(rv)
            if transform is not None:
                value = transform.forward(value, *rv.owner.inputs).eval()
            values[pm_model.rvs_to_values[rv].name] = value
        ours = float(glmm.log_density(problem.layout, theta, problem.data))
        assert ours - _jacobian(problem.layout, theta) == pytest.approx(
            float(logp(values)), abs=1e-8)


def test_centred_density_is_the_change_of_variables():
    """Centred (``r``) and non-centred (``z``) densities differ by ``G log|T|``."""
    model = bm.Model("y ~ x + (1 + x | g)", _data(), family="poisson")
    problem = glmm.prepare(model.design, model.priors)
    nc = problem.layout
    c = nc.with_centring((True,), nc.dense)
    theta = 0.5 * np.random.default_rng(2).normal(size=nc.dim)
    centred = glmm._rebalanced(nc, c, theta, problem.data)
    theta_nc = glmm._rebalanced(nc, nc, theta, problem.data)  # same sd, L and r
    fl = nc.factors[0]
    sd = np.exp(theta_nc[fl.sd_slots[0].start: fl.sd_slots[0].start + 2])
    L = np.asarray(glmm._corr_cholesky(theta_nc[fl.lkj_start: fl.lkj_start + 1], 2)[0])
    log_det_T = np.log(sd).sum() + np.log(np.diag(L)).sum()
    a = float(glmm.log_density(c, centred, problem.data))
    b = float(glmm.log_density(nc, theta_nc, problem.data))
    assert a == pytest.approx(b - fl.n_levels * log_det_T, abs=1e-9)


@pytest.mark.parametrize(("family", "formula"), CASES)
def test_parametrisation_as_data_is_the_same_density(family, formula):
    """The programs compiled once per structure (the parametrisation of each factor as
    data, ``GlmmLayout.generic``) give the density and gradient of the fixed layouts."""
    import jax
    import jax.numpy as jnp

    model = bm.Model(formula, _data(), family=family)
    problem = glmm.prepare(model.design, model.priors)
    nc = problem.layout
    rng = np.random.default_rng(5)
    for centred in {tuple(bool(c) for c in rng.integers(0, 2, len(nc.factors))),
                    tuple(True for _ in nc.factors), tuple(False for _ in nc.factors)}:
        layout = nc.with_centring(centred, nc.dense)
        theta = jnp.asarray(0.4 * rng.normal(size=nc.dim))
        fixed = jax.value_and_grad(lambda t, la=layout: glmm.log_density(la, t, problem.data))
        generic = jax.value_and_grad(lambda t, la=layout: glmm.log_density(
            la.generic(), t, glmm._flagged(la, problem.data)))
        (a, ga), (b, gb) = fixed(theta), generic(theta)
        assert float(b) == pytest.approx(float(a), abs=1e-9), centred
        np.testing.assert_allclose(np.asarray(gb), np.asarray(ga), rtol=1e-9, atol=1e-9)


def _simulated(seed: int, per_level: int, sd: float, levels: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(levels), per_level)
    x = rng.normal(size=g.size)
    eta = 0.5 + 0.8 * x + rng.normal(scale=sd, size=levels)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": [f"G{i}" for i in g]})


def test_centring_follows_the_information_per_level():
    rich = bm.Model("y ~ x + (1 | g)", _simulated(3, 80, 1.0), family="poisson")
    poor = bm.Model("y ~ x + (1 | g)", _simulated(3, 2, 0.05, levels=40), family="poisson")
    for model, expected in ((rich, True), (poor, False)):
        problem = glmm.warm_start(glmm.prepare(model.design, model.priors))
        assert problem.layout.factors[0].centred is expected


@pytest.fixture(scope="module")
def poisson_fits():
    """The same model by the engine and by the PyMC translation (the previous full path)."""
    from bayesmixed.build import hyper_var_names
    from bayesmixed.engines import glmm
    from bayesmixed.engines.common import SamplerSettings
    from bayesmixed.engines.nuts import run_sampler
    from bayesmixed.results import Fit

    model = bm.Model("y ~ x + (1 + x | g)", _simulated(5, 15, 0.6), family="poisson")
    settings = SamplerSettings(draws=500, tune=500, chains=2, random_seed=3,
                               progressbar=False)
    # the engine itself, and the PyMC translation on the same model: interchangeable outputs
    idata, seconds = glmm.fit(model.design, model.priors, settings)
    ours = Fit(model, idata, settings=settings, sampling_time=seconds)
    ref, _ = run_sampler(model.build(), settings, hyper_var_names(model.design))
    return model, ours, ref


def test_same_variables_dims_and_coords_as_the_pymc_path(poisson_fits):
    _, ours, ref = poisson_fits
    a, b = ours.idata["posterior"], ref["posterior"]
    assert a.attrs["engine"] == "glmm"
    assert sorted(a.data_vars) == sorted(b.data_vars)
    for name in a.data_vars:
        assert a[name].dims == b[name].dims, name
        for dim in a[name].dims:
            np.testing.assert_array_equal(a[dim].values, b[dim].values)
    obs_a = ours.idata["observed_data"].to_dataset()
    obs_b = ref["observed_data"].to_dataset()
    for name in obs_b.data_vars:
        np.testing.assert_array_equal(obs_a[name].values, obs_b[name].values)


def test_posterior_means_agree_with_the_pymc_path(poisson_fits):
    import arviz as az

    _, ours, ref = poisson_fits
    a = ours.idata["posterior"].to_dataset()
    b = ref["posterior"].to_dataset()
    se_a, se_b = az.mcse(a), az.mcse(b)
    for name in ["Intercept", "x", "sd_g", "cor_g", "r_g"]:
        diff = np.abs(a[name].mean(("chain", "draw")) - b[name].mean(("chain", "draw")))
        limit = 4.5 * np.sqrt(se_a[name] ** 2 + se_b[name] ** 2) + 1e-9
        assert bool((diff <= limit).all()), name


def test_fit_works_downstream(poisson_fits):
    model, ours, _ = poisson_fits
    table = ours.summary()
    assert {"Intercept", "x", "sd(Intercept|g)", "cor(Intercept,x|g)"} <= set(table.index)
    assert table["r_hat"].max() < 1.05
    ranef = ours.ranef()["g"]
    assert ranef.shape[0] == 12
    pred = ours.predict(model.data.head(5))
    assert pred.summary().shape[0] == 5
    assert bool((pred.draws > 0).all())  # Poisson means


def test_second_fit_of_the_same_shape_reuses_the_compiled_sampler():
    model_a = bm.Model("y ~ x + (1 | g)", _simulated(7, 10, 0.5), family="poisson")
    model_b = bm.Model("y ~ x + (1 | g)", _simulated(8, 10, 0.5), family="poisson")
    kw = {"draws": 200, "tune": 200, "chains": 1, "random_seed": 1}
    model_a.fit(**kw)
    fit_b = model_b.fit(**kw)
    assert fit_b.idata["posterior"].attrs["compile_time"] < 1.0


def test_unsupported_models_say_why_and_use_the_pymc_translation():
    data = _data()
    model = bm.Model("y ~ x + (1 | g)", data, family="poisson", link="identity")
    assert "link 'identity'" in glmm.supports(model.design, model.priors)
    custom = bm.Model("y ~ x + (1 | g)", data, family="poisson",
                      priors={"x": bm.Prior("Uniform", lower=-5, upper=5)})
    assert "Uniform" in glmm.supports(custom.design, custom.priors)
    fit = custom.fit(draws=100, tune=100, chains=1, random_seed=1)
    assert fit.settings.engine == "nuts"
    assert fit.idata["posterior"].attrs["engine"] == "nuts"
    assert "not on the glmm engine" in fit.settings.engine_reason
    assert "Uniform" in fit.settings.engine_reason


@pytest.mark.parametrize(("family", "formula", "centred"), [
    ("poisson", "y ~ x + (1 + x | g) + (1 | h)", (False, False)),
    ("poisson", "y ~ x + (1 + x | g) + (1 | h)", (True, False)),
    ("bernoulli", "k ~ x + (x || g) + (1 | h)", (False, True)),
])
def test_warm_start_hessian_is_exact(family, formula, centred):
    """The warm start's Hessian is the exact one, each level's intercept-slope block
    included (dropping it once gave slope models a near-flat direction of scale ~250)."""
    import jax

    model = bm.Model(formula, _data(), family=family)
    problem = glmm.prepare(model.design, model.priors)
    nc = problem.layout
    layout = nc.with_centring(centred, nc.dense)
    theta0 = 0.3 * np.random.default_rng(4).normal(size=nc.dim)
    theta = glmm._rebalanced(nc, layout, theta0, problem.data)
    diag, H = glmm._structured_hessian(layout, theta, problem.data)
    exact = np.asarray(jax.hessian(lambda t: -glmm.log_density(layout, t, problem.data))(theta))
    assert layout.dense and H.shape == (nc.dim, nc.dim)
    np.testing.assert_allclose(H, exact, atol=1e-9 * np.abs(exact).max())
    np.testing.assert_allclose(diag, np.diag(exact), rtol=1e-9)
    S = glmm._scale(layout, theta, problem.data)
    vals, vecs = np.linalg.eigh(exact)
    expected = np.maximum(np.abs(vals), 1.0 / glmm.MAX_SCALE ** 2)  # |H| with a floor
    np.testing.assert_allclose(np.linalg.inv(S @ S.T), (vecs * expected) @ vecs.T,
                               atol=1e-7 * np.abs(exact).max())


def test_scale_of_a_flat_direction_is_capped():
    """A direction of zero or negative curvature gets at most ``MAX_SCALE``."""
    model = bm.Model("y ~ x + (1 + x | g)", _data(), family="poisson")
    problem = glmm.prepare(model.design, model.priors)
    nc = problem.layout
    diag_layout = glmm.GlmmLayout(**{**nc.__dict__, "dense": False})
    theta = glmm._rebalanced(nc, nc, np.zeros(nc.dim), problem.data)
    for layout in (nc, diag_layout):
        S = glmm._scale(layout, theta, problem.data)
        sv = np.linalg.svd(S, compute_uv=False) if S.ndim == 2 else np.abs(S)
        assert 0 < sv.min() and sv.max() <= glmm.MAX_SCALE * (1 + 1e-9)


def test_chooser_sends_group_slopes_to_the_engine():
    from bayesmixed.engines import choose_engine
    from bayesmixed.engines.common import SamplerSettings

    for formula in ("y ~ x + (1 + x | g)", "y ~ x + (x || g) + (1 | h)"):
        model = bm.Model(formula, _data(), family="poisson")
        chosen = choose_engine(model.design, model.priors, SamplerSettings())
        assert chosen.engine == "glmm", chosen.engine_reason


def _slope_data(family: str, seed: int, levels: int, per_level: int, sd=(0.5, 0.3),
                cor: float = 0.5, realised: dict | None = None) -> pd.DataFrame:
    """Simulated ``y ~ x + (1 + x | g)`` with known SDs and correlation (``realised``, if
    given, receives the SDs and correlation of the effects actually drawn)."""
    from scipy import special

    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(levels), per_level)
    x = rng.normal(size=g.size)
    cov = np.array([[1.0, cor], [cor, 1.0]]) * np.outer(sd, sd)
    r = rng.multivariate_normal(np.zeros(2), cov, size=levels)
    if realised is not None:
        realised.update({"sd(Intercept|g)": r[:, 0].std(ddof=1), "sd(x|g)": r[:, 1].std(ddof=1),
                         "cor(Intercept,x|g)": np.corrcoef(r.T)[0, 1]})
    eta = 0.3 + r[g, 0] + (0.6 + r[g, 1]) * x
    df = pd.DataFrame({"x": x, "g": [f"G{i}" for i in g]})
    if family == "poisson":
        df["y"] = rng.poisson(np.exp(eta))
    elif family == "bernoulli":
        df["y"] = rng.binomial(1, special.expit(eta))
    else:
        df["n"] = rng.integers(5, 15, size=g.size)
        df["k"] = rng.binomial(df["n"], special.expit(eta))
    return df


def _assert_same_posterior(ours, ref, *, same_names: bool = False,
                           sds: bool = False) -> None:
    """A glmm fit against the PyMC path's draws ``ref``: few divergences, R-hat < 1.02,
    means within Monte Carlo error (and SDs within 15 % when ``sds``)."""
    import arviz as az

    assert ours.settings.engine == "glmm"
    a = ours.idata["posterior"].to_dataset()
    b = ref["posterior"].to_dataset()
    if same_names:
        assert sorted(a.data_vars) == sorted(b.data_vars)
    assert int(ours.idata["sample_stats"]["diverging"].sum()) <= 5
    assert float(az.rhat(a).to_array().max()) < 1.02
    se_a, se_b = az.mcse(a), az.mcse(b)
    for name in b.data_vars:
        diff = np.abs(a[name].mean(("chain", "draw")) - b[name].mean(("chain", "draw")))
        limit = 4.5 * np.sqrt(se_a[name] ** 2 + se_b[name] ** 2) + 1e-9
        assert bool((diff <= limit).all()), name
        if sds:
            sd_a, sd_b = a[name].std(("chain", "draw")), b[name].std(("chain", "draw"))
            assert bool((np.abs(sd_a - sd_b) <= 0.15 * sd_b + 1e-9).all()), name


@pytest.mark.slow
@pytest.mark.parametrize(("family", "formula"), [
    ("binomial", "cbind(k, n - k) ~ x + (x | g)"),
    ("bernoulli", "y ~ x + (x || g)"),
    ("poisson", "y ~ x + (x || g)"),
])
def test_slope_posteriors_agree_with_the_pymc_path(family, formula):
    """Posterior means of both engines within Monte Carlo error on small slope GLMMs."""
    model = bm.Model(formula, _slope_data(family, 11, 20, 20), family=family)
    kw = {"draws": 1000, "tune": 1000, "chains": 2, "random_seed": 5}
    ours = model.fit(**kw)
    ref = _nuts_fit(model, kw)  # the PyMC translation of the same model
    _assert_same_posterior(ours, ref)


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "formula"), [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),  # a correlated slope
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),  # crossed factors
])
def test_gaussian_full_models_agree_with_the_pymc_path(dataset, formula):
    """Gaussian full models (``marginalize=False``, or crossed factors) run on this engine
    and give the PyMC translation's posterior within Monte Carlo error."""
    model = bm.Model(formula, getattr(bm.datasets, dataset)())
    kw = {"draws": 1000, "tune": 1000, "chains": 2, "random_seed": 7}
    ours = model.fit(marginalize=False, **kw)
    ref = _nuts_fit(model, kw)
    _assert_same_posterior(ours, ref, same_names=True, sds=True)


def test_chooser_sends_gaussian_full_models_to_the_engine(sleepstudy):
    """Gaussian full models run here with numpyro; other samplers keep the PyMC graph."""
    from bayesmixed.engines import choose_engine
    from bayesmixed.engines.common import SamplerSettings

    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    base = SamplerSettings(draws=10, tune=10)
    full = choose_engine(model.design, model.priors, base, marginalize=False)
    assert full.engine == "glmm" and "gaussian family" in full.engine_reason
    for sampler in ("blackjax", "pymc"):
        other = choose_engine(model.design, model.priors, base, sampler=sampler,
                              marginalize=False)
        assert (other.engine, other.sampler) == ("nuts", sampler)
    crossed = bm.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", bm.datasets.penicillin())
    chosen = choose_engine(crossed.design, crossed.priors, base)
    assert chosen.engine == "glmm" and "no exact marginal form" in chosen.engine_reason


def _nuts_fit(model, kw):
    from bayesmixed.build import hyper_var_names
    from bayesmixed.engines.common import SamplerSettings
    from bayesmixed.engines.nuts import run_sampler

    settings = SamplerSettings(**kw, progressbar=False)
    return run_sampler(model.build(), settings, hyper_var_names(model.design))[0]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["poisson", "bernoulli"])
def test_recovers_a_simulated_slope_sd_and_correlation(family):
    """The SDs and correlation of the drawn effects, and the common effects, lie inside
    their 99 % intervals (five checks a fit: 95 % ones would miss one a fit in four)."""
    sd, cor, realised = (0.5, 0.4), 0.6, {}
    levels, per_level = (40, 30) if family == "poisson" else (60, 60)
    data = _slope_data(family, 21, levels, per_level, sd=sd, cor=cor, realised=realised)
    fit = bm.Model("y ~ x + (1 + x | g)", data, family=family).fit(
        draws=1000, tune=1000, chains=2, random_seed=2)
    assert fit.settings.engine == "glmm"
    table = fit.summary(quantiles=(0.005, 0.995))
    assert table["r_hat"].max() <= 1.01
    for name, value in {**realised, "Intercept": 0.3, "x": 0.6}.items():
        assert table.loc[name, "q0.5"] <= value <= table.loc[name, "q99.5"], (
            name, table.loc[name])


def test_slope_factors_need_more_information_to_be_centred():
    """``kappa`` about 1.3 for the slope: centred for an intercept, not for a slope."""
    model = bm.Model("y ~ x + (x || g)", _slope_data("bernoulli", 11, 20, 20),
                     family="bernoulli")
    problem = glmm.warm_start(glmm.prepare(model.design, model.priors))
    assert problem.layout.factors[0].centred is False
    rich = bm.Model("y ~ x + (x | g)", _slope_data("poisson", 3, 8, 150, sd=(1.0, 0.8)),
                    family="poisson")
    problem = glmm.warm_start(glmm.prepare(rich.design, rich.priors))
    assert problem.layout.factors[0].centred is True
