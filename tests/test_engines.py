"""The engines behind one seam: one prior table, one chooser, shared seeding and chain placement.

Quick tests check the prior table against PyMC's own densities and transforms (the full
NUTS model's log density), that the marginal and Gibbs engines evaluate exactly the
table's densities, that every engine fits models with PyMC's alternative parametrisations
(bug 6), and the option checks (NumPy integers, prior parameters, samplers). The ``slow``
test fits one model on every engine and compares the posteriors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmixed as bm
from bayesmixed import prior_numpy
from bayesmixed import prior_table as table
from bayesmixed.engines import choose_engine, gibbs, marginal
from bayesmixed.engines.common import SamplerSettings, configure_jax, place_chains
from bayesmixed.errors import PriorError, SamplingError

# every supported prior in every parametrisation PyMC accepts, with points in its support
PRIORS = [
    ("Normal", {"mu": 1.0, "sigma": 2.0}, [-1.0, 3.0, 0.2]),
    ("Normal", {"mu": 1.0, "tau": 0.25}, [-1.0, 3.0, 0.2]),
    ("Normal", {}, [-1.0, 3.0, 0.2]),
    ("StudentT", {"nu": 3.0, "mu": 1.0, "sigma": 2.0}, [-4.0, 2.0, 0.3]),
    ("StudentT", {"nu": 5.0, "lam": 0.5}, [-4.0, 2.0, 0.3]),
    ("Cauchy", {"alpha": 0.5, "beta": 2.0}, [-4.0, 2.0, 0.3]),
    ("Laplace", {"mu": 0.5, "b": 2.0}, [-4.0, 2.0, 0.3]),
    ("Flat", {}, [-4.0, 2.0, 0.3]),
    ("HalfNormal", {"sigma": 3.0}, [0.5, 4.0, 9.0]),
    ("HalfNormal", {"tau": 0.2}, [0.5, 4.0, 9.0]),
    ("HalfStudentT", {"nu": 4.0, "sigma": 3.0}, [0.5, 7.0, 20.0]),
    ("HalfStudentT", {"nu": 4.0, "lam": 0.1}, [0.5, 7.0, 20.0]),
    ("HalfCauchy", {"beta": 2.0}, [0.5, 7.0, 20.0]),
    ("Exponential", {"lam": 0.5}, [0.5, 7.0, 20.0]),
    ("Exponential", {"scale": 3.0}, [0.5, 7.0, 20.0]),
    ("Gamma", {"alpha": 2.0, "beta": 0.5}, [0.5, 7.0, 20.0]),
    ("Gamma", {"mu": 2.0, "sigma": 1.5}, [0.5, 7.0, 20.0]),
    ("InverseGamma", {"alpha": 3.0, "beta": 2.0}, [0.5, 7.0, 20.0]),
    ("InverseGamma", {"mu": 2.0, "sigma": 1.0}, [0.5, 7.0, 20.0]),
    ("LogNormal", {"mu": 0.5, "sigma": 0.8}, [0.5, 7.0, 20.0]),
    ("LogNormal", {"mu": 0.5, "tau": 2.0}, [0.5, 7.0, 20.0]),
    ("Weibull", {"alpha": 1.5, "beta": 2.0}, [0.5, 7.0, 20.0]),
    ("HalfFlat", {}, [0.5, 7.0, 20.0]),
    ("Uniform", {"lower": 1.0, "upper": 30.0}, [1.5, 7.0, 20.0]),
]
IDS = [f"{name}-{'-'.join(params) or 'default'}" for name, params, _ in PRIORS]


def test_every_table_row_is_tested():
    assert {name for name, _, _ in PRIORS} | {"Lognormal"} == set(table.SUPPORTED_PRIORS)
    # and has a NumPy twin (a row without one would make marginal fits compile more)
    assert all(prior_numpy.has_twin(name) for name in table.SUPPORTED_PRIORS)


def _exact(name, params):
    """PyMC's parameters, with LogNormal's tau converted exactly (PyMC converts it in
    single precision: -1.30281800 where scipy and PyMC's own sigma=tau**-0.5 give
    -1.30281796)."""
    if name == "LogNormal" and "tau" in params:
        return {"mu": params["mu"], "sigma": params["tau"] ** -0.5}
    return params


def _pymc_logp(name, params, points):
    import pymc as pm

    dist = getattr(pm, name).dist(**params)
    return np.array([float(pm.logp(dist, x).eval()) for x in points])


def _slot(name, params, points, allowed):
    """The marginal engine's prior slot for this prior over ``len(points)`` coordinates."""
    data: dict = {}
    slot = marginal._slot("x", bm.Prior(name, **params), 0, len(points), "prior.x", data,
                          allowed)
    return slot, data


@pytest.mark.parametrize(("name", "params", "points"), PRIORS, ids=IDS)
def test_prior_densities_agree_on_every_engine(name, params, points):
    """nuts (PyMC's logp), marginal and gibbs evaluate the same density, to 1e-8.

    PyMC computes some normalising constants in single precision (its ``log(2 pi)`` is
    off by 2e-9), so absolute values are compared to 1e-6 and differences between points
    (where constants cancel) to 1e-8.
    """
    configure_jax()
    x = np.asarray(points)
    pymc = _pymc_logp(name, _exact(name, params), points)
    prior = bm.Prior(name, **params)
    ours = np.asarray(table.log_prob(name, table.canonical(prior), x))
    sup = table.support(name)
    slot, data = _slot(name, params, points,
                       (table.REAL,) if sup == table.REAL else (table.POSITIVE,))
    engines = {
        "table": ours,
        "marginal": np.array([float(marginal._prior_logp(slot, x[i:i + 1],
                                                          {k: v[i:i + 1] for k, v in
                                                           data.items()}))
                              for i in range(len(x))]),
        # the NumPy twin the marginal engine's mode search evaluates
        "numpy": prior_numpy.log_prob(name, table.canonical(prior), x),
    }
    np.testing.assert_allclose(engines["numpy"], ours, rtol=1e-12, atol=1e-12)
    if sup == table.POSITIVE:  # the Gibbs engine takes positive priors (SDs and sigma)
        engines["gibbs"] = np.array([float(table.log_prob(name, gibbs._canon(prior, "x"), v))
                                     for v in x])
    for engine, values in engines.items():
        np.testing.assert_allclose(values, pymc, rtol=0, atol=1e-6, err_msg=engine)
        np.testing.assert_allclose(np.diff(values), np.diff(pymc), rtol=0, atol=1e-8,
                                   err_msg=engine)


@pytest.mark.parametrize(
    ("name", "params", "points"),
    [row for row in PRIORS if table.support(row[0]) != table.REAL],
    ids=[i for i, row in zip(IDS, PRIORS, strict=True) if table.support(row[0]) != table.REAL],
)
def test_marginal_transforms_match_what_pymc_samples(name, params, points):
    """Prior + log |Jacobian| on the unconstrained scale equals PyMC's transformed logp."""
    import pymc as pm

    configure_jax()
    slot, data = _slot(name, params, points, (table.POSITIVE,))
    with pm.Model() as model:
        getattr(pm, name)("x", **_exact(name, params))
    value_var = model.value_vars[0]
    logp = model.compile_logp(jacobian=True)
    unconstrained = marginal._unconstrain(slot, np.asarray(points), data)
    theirs = np.array([logp({value_var.name: u}) for u in unconstrained])
    ours = []
    for i, u in enumerate(unconstrained):
        one = {k: v[i:i + 1] for k, v in data.items()}
        value, jac = marginal._constrain(slot, np.array([u]), one)
        np.testing.assert_allclose(np.asarray(value), [points[i]], rtol=1e-10)
        ours.append(float(jac + marginal._prior_logp(slot, value, one)))
        value_np, jac_np = marginal._constrain(slot, np.array([u]), one, np)  # NumPy twin
        np.testing.assert_allclose(value_np, np.asarray(value), rtol=1e-12)
        assert float(jac_np) == pytest.approx(float(jac), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(np.diff(ours), np.diff(theirs), rtol=0, atol=1e-8)


def test_canonical_resolves_pymc_alternatives_once():
    canon = {k: float(v) for k, v in table.canonical(bm.Prior("HalfNormal", tau=4.0)).items()}
    assert canon == {"scale": 0.5}
    canon = table.canonical(bm.Prior("Exponential", scale=2.0))
    assert float(canon["rate"]) == 0.5
    canon = table.canonical(bm.Prior("StudentT", nu=3, lam=0.25))
    assert (float(canon["df"]), float(canon["loc"]), float(canon["scale"])) == (3.0, 0.0, 2.0)


@pytest.mark.parametrize(
    ("prior", "message"),
    [
        (bm.Prior("Normal", mu=0, sigma=1, tau=2), "either 'sigma' or 'tau'"),
        (bm.Prior("Exponential"), "needs the parameter 'lam'"),
        (bm.Prior("Gamma", alpha=2, mu=1, sigma=1), "'alpha' and 'beta', or 'mu' and 'sigma'"),
        (bm.Prior("HalfNormal", scale=2), "HalfNormal has no parameter 'scale'"),
    ],
)
def test_bad_prior_parameters_are_refused_before_sampling(sleepstudy, prior, message):
    model = bm.Model("Reaction ~ Days + (1 | Subject)", sleepstudy, priors={"Days": prior}
                     if prior.name in ("Normal",) else {"sd(Subject)": prior})
    with pytest.raises(PriorError, match=message):
        model.priors


@pytest.mark.parametrize("value", ["abc", [1, "x"], True, {"a": 1}])
def test_prior_parameters_must_be_numbers(value):
    with pytest.raises(PriorError, match=r"parameter sigma=.* must be a number"):
        bm.Prior("Normal", mu=0, sigma=value)


def test_numpy_integers_are_integers():
    s = SamplerSettings(draws=np.int64(100), tune=np.int32(50), chains=np.uint8(2),
                        random_seed=np.int64(7), target_accept=np.float32(0.9))
    assert (s.draws, s.tune, s.chains, s.random_seed) == (100, 50, 2, 7)
    assert all(type(v) is int for v in (s.draws, s.tune, s.chains, s.random_seed))
    assert type(s.target_accept) is float
    for bad in (np.float64(3.0), 2.5, True, np.bool_(True), "10"):
        with pytest.raises(SamplingError, match="draws="):
            SamplerSettings(draws=bad)
    with pytest.raises(SamplingError, match="random_seed=-1"):
        SamplerSettings(random_seed=np.int64(-1))


def test_nutpie_is_not_offered(sleepstudy):
    model = bm.Model("Reaction ~ Days + (1 | Subject)", sleepstudy)
    with pytest.raises(SamplingError, match="Unknown sampler 'nutpie'; choose 'auto' or one of"):
        model.fit(sampler="nutpie", draws=10, tune=10)


def test_parallel_chains_without_devices_warn_with_the_fix():
    import jax

    n = jax.local_device_count()
    with pytest.warns(UserWarning, match="XLA_FLAGS=--xla_force_host_platform_device_count") as rec:
        method = place_chains(SamplerSettings(chains=n + 1, chain_method="parallel"))
    assert method == "sequential"
    assert rec[0].filename == __file__  # points at the caller's line
    assert place_chains(SamplerSettings(chains=1, chain_method="parallel")) == "sequential"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert place_chains(SamplerSettings(chains=n + 1)) == "sequential"


# ---------------------------------------------------------------------------------------
# Bug 6: PyMC's alternative parametrisations on every engine
# ---------------------------------------------------------------------------------------

BUG6 = {
    "sd(Subject)": bm.Prior("HalfNormal", tau=1e-4),  # sigma = 100
    "Days": bm.Prior("Normal", mu=0, tau=0.01),  # sigma = 10
    "sigma": bm.Prior("Exponential", scale=20.0),
}
KW = {"draws": 150, "tune": 150, "chains": 2, "random_seed": 1, "progressbar": False}


@pytest.mark.parametrize(
    ("options", "engine"),
    [({"marginalize": False}, "glmm"), ({}, "marginal"), ({"sampler": "gibbs"}, "gibbs")],
)
def test_alternative_parametrisations_fit_on_every_engine(sleepstudy, options, engine):
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy, priors=BUG6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.errors.ConvergenceWarning)
        fit = model.fit(**KW, **options)
    assert fit.settings.engine == engine
    assert fit.idata["posterior"].attrs["engine"] == engine
    table_ = fit.summary()
    assert 5 < table_.loc["Days", "mean"] < 15  # lme4: 10.47
    assert 15 < table_.loc["sigma", "mean"] < 40  # lme4: 25.6
    words = {"glmm": "(numpyro NUTS)", "marginal": "(numpyro NUTS, group effects marginalised)",
             "gibbs": "(gibbs)"}[engine]
    assert words in repr(fit)


def _crossed(n_a=900, n_b=120, rows=3000, seed=2):
    rng = np.random.default_rng(seed)
    a = rng.permutation(np.arange(rows) % n_a)  # every level observed
    b = rng.permutation(np.arange(rows) % n_b)
    x = rng.normal(size=rows)
    y = 1 + 0.5 * x + rng.normal(size=n_a)[a] * 0.7 + rng.normal(size=n_b)[b] * 0.4
    y = y + rng.normal(size=rows)
    return pd.DataFrame({"y": y, "x": x, "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})


def test_auto_sends_large_crossed_models_to_gibbs_with_alternative_priors():
    priors = {"sd(a)": bm.Prior("HalfNormal", tau=1.0), "x": bm.Prior("Normal", mu=0, tau=0.1),
              "sigma": bm.Prior("Exponential", scale=2.0)}
    model = bm.Model("y ~ x + (1 | a) + (1 | b)", _crossed(), priors=priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.errors.ConvergenceWarning)
        fit = model.fit(draws=100, tune=100, chains=1, random_seed=3, progressbar=False)
    assert fit.settings.engine == "gibbs"
    assert "large Gaussian model (3000 rows, 1020 group levels)" in fit.settings.engine_reason
    table_ = fit.summary()
    assert table_.loc["x", "mean"] == pytest.approx(0.5, abs=0.1)
    assert table_.loc["sigma", "mean"] == pytest.approx(1.0, abs=0.15)


def test_chooser_records_why(sleepstudy):
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    base = SamplerSettings(draws=10, tune=10)
    s = choose_engine(model.design, model.priors, base)
    assert (s.engine, s.sampler) == ("marginal", "numpyro")
    assert "one grouping factor" in s.engine_reason
    s = choose_engine(model.design, model.priors, base, sampler="pymc")
    assert (s.engine, s.sampler) == ("nuts", "pymc")
    assert "sampler='pymc'" in s.engine_reason
    s = choose_engine(model.design, model.priors, base, sampler="gibbs")
    assert (s.engine, s.sampler) == ("gibbs", "gibbs")
    with pytest.raises(SamplingError, match="marginalize=1"):
        choose_engine(model.design, model.priors, base, marginalize=1)


def test_same_seed_same_draws_on_every_engine(sleepstudy):
    model = bm.Model("Reaction ~ Days + (1 | Subject)", sleepstudy)
    kw = {"draws": 30, "tune": 30, "chains": 2, "progressbar": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.errors.ConvergenceWarning)
        for options in ({}, {"sampler": "gibbs"}):
            a = model.fit(random_seed=np.int64(5), **kw, **options)
            b = model.fit(random_seed=5, **kw, **options)
            c = model.fit(random_seed=6, **kw, **options)
            va, vb, vc = (f.idata["posterior"]["Days"].values for f in (a, b, c))
            np.testing.assert_array_equal(va, vb)
            assert not np.array_equal(va, vc)


def test_a_progress_bar_changes_no_draw_and_waits_for_few_blocks(sleepstudy, monkeypatch,
                                                                 capsys):
    """Each progress update waits for the iterations before it: a fast fit is sampled in a
    few large blocks (after a first 5 %), not in 20, and gives the same draws."""
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy)
    kw = {"draws": 1000, "tune": 1000, "chains": 2, "random_seed": 4}
    quiet = model.fit(progressbar=False, **kw)
    import jax

    waits = []
    wait = jax.block_until_ready

    def counting(x):
        waits.append(1)
        return wait(x)

    monkeypatch.setattr(jax, "block_until_ready", counting)
    shown = model.fit(progressbar=True, **kw)
    assert "Sampling" in capsys.readouterr().err
    np.testing.assert_array_equal(quiet.idata["posterior"]["Days"].values,
                                  shown.idata["posterior"]["Days"].values)
    # 2,000 iterations: a first block of 100, then blocks of up to 512 (one chain method)
    assert 2 <= len(waits) <= 2 * 6, len(waits)


# ---------------------------------------------------------------------------------------
# The same posterior on every engine (slow)
# ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_engine_gives_the_same_posterior(sleepstudy):
    from test_marginal import assert_same_posterior

    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy, priors=BUG6)
    kw = {"draws": 1000, "tune": 1000, "chains": 4, "progressbar": False}
    fits = {
        "glmm": model.fit(marginalize=False, random_seed=11, **kw),  # full model, JAX density
        "marginal": model.fit(random_seed=12, **kw),
        "gibbs": model.fit(sampler="gibbs", random_seed=13, **{**kw, "draws": 4000}),
    }
    assert {k: f.settings.engine for k, f in fits.items()} == {k: k for k in fits}
    tables = {k: f.summary() for k, f in fits.items()}
    for name in ("marginal", "gibbs"):
        print("\n" + name + "\n" + tables[name].round(3).to_string())
        assert_same_posterior(tables[name], tables["glmm"])


@pytest.mark.parametrize("chains, draws", [(2, 5), (3, 2)])
def test_datatree_is_the_one_arviz_from_dict_builds(chains, draws):
    from arviz_base import from_dict

    from bayesmixed.engines.common import to_datatree

    rng = np.random.default_rng(1)
    posterior = {"Intercept": rng.normal(size=(chains, draws)),
                 "sd_g": rng.normal(size=(chains, draws, 2)),
                 "r_g": rng.normal(size=(chains, draws, 3, 2)),
                 "extra": rng.normal(size=(chains, draws, 4))}  # no dims: ArviZ names them
    stats = {"diverging": np.zeros((chains, draws), dtype=bool),
             "n_steps": np.arange(chains * draws).reshape(chains, draws)}
    observed = {"y": rng.normal(size=6)}
    coords = {"g": ["a", "b", "c"], "g__term": ["Intercept", "x"], "sd_g_dim": ["1", "x"],
              "__obs__": np.arange(6), "unused": [1, 2]}
    dims = {"sd_g": ["sd_g_dim"], "r_g": ["g", "g__term"], "y": ["__obs__"]}
    attrs = {"engine": "marginal", "sampling_time": 0.5}
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        tree = to_datatree(posterior, stats, observed=observed, coords=coords, dims=dims,
                           attrs=attrs)
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        used = {d for ds in dims.values() for d in ds}
        expected = from_dict(
            {"posterior": posterior, "sample_stats": stats, "observed_data": observed},
            coords={k: v for k, v in coords.items() if k in used}, dims=dims,
            sample_dims=["chain", "draw"], attrs={"posterior": attrs})
    assert [str(w.message) for w in ours] == [str(w.message) for w in theirs]
    assert bool(ours) == (chains > draws)  # ArviZ's "chain longer than draw" check kept
    assert list(tree.children) == list(expected.children)
    for group in expected.children:
        a, b = tree[group].to_dataset(), expected[group].to_dataset()
        assert a.attrs.pop("created_at") and b.attrs.pop("created_at")
        assert a.identical(b), group
