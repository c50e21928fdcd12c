"""``offset(...)``: a known term of the linear predictor, in every engine and in predictions.

Regression tests of issue 10, bug 7 (``offset()`` crashed with KeyError in marginal.py and
build.py). Checks: the Gaussian offset model is the model of ``y - offset`` (draw for draw
on the exact marginal and Gibbs engines, same log density in the full PyMC model), Poisson
and binomial fits recover simulated coefficients only with the offset, and predictions
evaluate the offset of new data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmixed as bm

K = dict(draws=150, tune=150, chains=2, random_seed=1)

PRIORS = {
    "Intercept": bm.Prior("Normal", mu=250, sigma=100),
    "Days": bm.Prior("Normal", mu=0, sigma=50),
    "sd(Intercept|Subject)": bm.Prior("HalfNormal", sigma=100),
    "sd(Days|Subject)": bm.Prior("HalfNormal", sigma=50),
    "sigma": bm.Prior("HalfNormal", sigma=100),
}


def quiet_fit(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short runs: convergence warnings expected
        return model.fit(**{**K, **kw})


@pytest.fixture(scope="module")
def shifted():
    """sleepstudy with a known offset ``o`` and the response minus it (``y2``)."""
    sleep = bm.datasets.sleepstudy()
    o = 0.5 * sleep["Days"] ** 2 - 7.0
    return sleep.assign(o=o, y2=sleep["Reaction"] - o)


def test_offset_is_not_a_coefficient(shifted):
    design = bm.Model("Reaction ~ Days + offset(o) + (Days | Subject)", shifted).design
    assert design.common.columns == ["Intercept", "Days"]
    assert list(design.common.term_slices) == ["Intercept", "Days"]
    assert design.common.X.shape == (180, 2)
    np.testing.assert_allclose(design.offset, shifted["o"])
    assert design.has_offset
    plain = bm.Model("Reaction ~ Days + (Days | Subject)", shifted).design
    np.testing.assert_array_equal(plain.offset, np.zeros(180))
    assert not plain.has_offset


def test_offset_of_an_expression_and_of_new_data(shifted):
    data = shifted.assign(t=np.exp(shifted["Days"] / 9))
    design = bm.Model("Reaction ~ Days + offset(np.log(t)) + (1 | Subject)", data).design
    np.testing.assert_allclose(design.offset, shifted["Days"] / 9, rtol=1e-12)
    new = pd.DataFrame({"Days": [1, 2], "t": [1.0, np.e], "Subject": ["308", "309"]})
    rows = design.evaluate(new)
    np.testing.assert_allclose(rows.offset, [0.0, 1.0], atol=1e-12)
    assert rows.X.shape == (2, 2)


@pytest.mark.parametrize("engine", [{}, {"sampler": "gibbs"}], ids=["marginal", "gibbs"])
def test_gaussian_offset_equals_model_of_y_minus_offset(shifted, engine):
    with_offset = quiet_fit(
        bm.Model("Reaction ~ Days + offset(o) + (Days | Subject)", shifted, priors=PRIORS),
        **engine,
    )
    subtracted = quiet_fit(
        bm.Model("y2 ~ Days + (Days | Subject)", shifted, priors=PRIORS), **engine
    )
    for name in ("Intercept", "Days", "sigma", "sd_Subject", "r_Subject"):
        np.testing.assert_allclose(
            with_offset.posterior[name].values, subtracted.posterior[name].values,
            rtol=1e-9, atol=1e-9,
        )
    pred = with_offset.predict(kind="linear").draws.values
    ref = subtracted.predict(kind="linear").draws.values + shifted["o"].to_numpy()
    np.testing.assert_allclose(pred, ref, rtol=1e-10)
    # new data: the offset is read from the new rows
    new = shifted.iloc[[0, 1]].assign(o=[0.0, 100.0])
    new_pred = with_offset.predict(new, kind="linear").draws.values
    base = subtracted.predict(shifted.iloc[[0, 1]], kind="linear").draws.values
    np.testing.assert_allclose(new_pred, base + np.array([0.0, 100.0]), rtol=1e-10)


def test_gaussian_offset_in_the_full_model(shifted):
    """No marginalisation: same log density as the model of y - offset, and a fit runs."""
    a = bm.Model("Reaction ~ Days + offset(o) + (Days | Subject)", shifted, priors=PRIORS)
    b = bm.Model("y2 ~ Days + (Days | Subject)", shifted, priors=PRIORS)
    ma, mb = a.build(), b.build()
    point = mb.initial_point()
    point["Intercept"] = np.array(240.0)
    point["Days"] = np.array(4.0)
    point["z_Subject"] = np.linspace(-1, 1, 36).reshape(18, 2)
    la, lb = ma.compile_logp()(point), mb.compile_logp()(point)
    assert np.isfinite(la)
    assert la == pytest.approx(lb, rel=1e-12)
    fit_a = quiet_fit(a, marginalize=False)
    exact = quiet_fit(b)  # the exact marginal engine on y - offset, as the reference
    fa, fb = fit_a.fixef(), exact.fixef()
    for term in ("Intercept", "Days"):
        assert abs(fa.loc[term, "mean"] - fb.loc[term, "mean"]) < 0.6 * fb.loc[term, "sd"]
    # predictions add the offset of each row: setting it to zero moves them by -o exactly
    pred = fit_a.predict(kind="linear").draws.values
    without = fit_a.predict(shifted.assign(o=0.0), kind="linear").draws.values
    np.testing.assert_allclose(pred - without, np.broadcast_to(shifted["o"], pred.shape),
                               atol=1e-9)


@pytest.fixture(scope="module")
def exposure_data():
    """Counts over exposures t: log E[y] = log t + 0.5 + 0.3 x + u_g (sd 0.3)."""
    rng = np.random.default_rng(42)
    n, groups = 2000, 25
    g = rng.integers(groups, size=n)
    x = rng.normal(size=n)
    t = rng.uniform(0.5, 20, size=n)
    u = rng.normal(0, 0.3, size=groups)
    y = rng.poisson(t * np.exp(0.5 + 0.3 * x + u[g]))
    return pd.DataFrame({"y": y, "x": x, "t": t, "g": [f"g{i}" for i in g]})


def test_poisson_offset_recovers_the_rate(exposure_data):
    fit = quiet_fit(bm.Model("y ~ x + offset(np.log(t)) + (1 | g)", exposure_data,
                             family="poisson"))
    fixef = fit.fixef()["mean"]
    assert fixef["Intercept"] == pytest.approx(0.5, abs=0.15)
    assert fixef["x"] == pytest.approx(0.3, abs=0.03)
    # the mean prediction is the rate times the exposure
    new = pd.DataFrame({"x": [0.0, 0.0], "t": [1.0, 10.0], "g": ["g0", "g0"]})
    mean = fit.predict(new, kind="mean").draws.values
    np.testing.assert_allclose(mean[..., 1], 10 * mean[..., 0], rtol=1e-10)
    linear = fit.predict(new, kind="linear").draws.values
    np.testing.assert_allclose(linear[..., 1] - linear[..., 0], np.log(10), rtol=1e-10)
    # without the offset the intercept absorbs the mean log exposure (~ 2.1): far from 0.5
    plain = quiet_fit(bm.Model("y ~ x + (1 | g)", exposure_data, family="poisson"),
                      draws=60, tune=100)
    assert plain.fixef()["mean"]["Intercept"] > 1.5


def test_binomial_offset_recovers_the_intercept():
    rng = np.random.default_rng(7)
    n, groups = 1500, 20
    g = rng.integers(groups, size=n)
    o = rng.uniform(-1.5, 1.5, size=n)
    eta = -0.5 + o + rng.normal(0, 0.2, size=groups)[g]
    size = rng.integers(5, 30, size=n)
    k = rng.binomial(size, 1 / (1 + np.exp(-eta)))
    data = pd.DataFrame({"k": k, "n": size, "o": o, "g": g})
    fit = quiet_fit(bm.Model("cbind(k, n - k) ~ 1 + offset(o) + (1 | g)", data))
    assert fit.fixef()["mean"]["Intercept"] == pytest.approx(-0.5, abs=0.15)
    new = pd.DataFrame({"o": [0.0, 1.0], "g": [0, 0], "k": [0, 0], "n": [10, 10]})
    linear = fit.predict(new, kind="linear").draws.values
    np.testing.assert_allclose(linear[..., 1] - linear[..., 0], 1.0, rtol=1e-10)
