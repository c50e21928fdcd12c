"""Prior predictive draws: the priors' moments, and the fit-like object built on them."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

import bayesmixed as bm
from bayesmixed.errors import FitError, SamplingError
from bayesmixed.prior_predictive import PriorFit

DRAWS = 4000


@pytest.fixture(scope="module")
def model(sleepstudy):
    return bm.Model(
        "Reaction ~ Days + (Days | Subject)",
        sleepstudy,
        priors={
            "Intercept": bm.Prior("Normal", mu=250, sigma=50),
            "Days": bm.Prior("Normal", mu=0, sigma=10),
            "sd(Days|Subject)": bm.Prior("HalfNormal", sigma=20),
            "sigma": bm.Prior("HalfNormal", sigma=30),
        },
    )


@pytest.fixture(scope="module")
def prior(model):
    return model.sample_prior(draws=DRAWS, random_seed=1)


def _close(value, expected, se, k=4.0):
    assert abs(value - expected) < k * se, (value, expected, se)


def test_prior_draws_match_prior_moments(prior, model):
    post = prior.posterior
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == DRAWS
    n = DRAWS
    days = post["Days"].values.ravel()  # Normal(0, 10)
    _close(days.mean(), 0.0, 10 / np.sqrt(n))
    _close(days.std(ddof=1), 10.0, 10 / np.sqrt(2 * n))
    icpt = post["Intercept"].values.ravel()  # Normal(250, 50)
    _close(icpt.mean(), 250.0, 50 / np.sqrt(n))
    _close(icpt.std(ddof=1), 50.0, 50 / np.sqrt(2 * n))
    # HalfNormal(s): mean s sqrt(2/pi), sd s sqrt(1 - 2/pi)
    for values, s in (
        (post["sd_Subject"].sel(Subject__term="Days").values.ravel(), 20.0),
        (post["sigma"].values.ravel(), 30.0),
    ):
        sd = s * np.sqrt(1 - 2 / np.pi)
        _close(values.mean(), s * np.sqrt(2 / np.pi), sd / np.sqrt(n))
        _close(values.std(ddof=1), sd, 1.5 * sd / np.sqrt(2 * n))
        assert values.min() > 0
    # default HalfNormal prior of the intercept SD, as the model reports it
    default = model.priors.sd["sd(Intercept|Subject)"]
    assert default.name == "HalfNormal"
    s = float(np.squeeze(default.params["sigma"]))
    values = post["sd_Subject"].sel(Subject__term="Intercept").values.ravel()
    _close(values.mean(), s * np.sqrt(2 / np.pi), s * np.sqrt(1 - 2 / np.pi) / np.sqrt(n))
    # LKJ(1) on a 2 x 2 correlation: uniform on (-1, 1), mean 0, sd 1/sqrt(3)
    cor = post["cor_Subject"].sel(Subject__term="Intercept", Subject__term2="Days").values
    _close(cor.mean(), 0.0, np.sqrt(1 / 3) / np.sqrt(n))
    _close(cor.std(ddof=1), np.sqrt(1 / 3), 0.6 / np.sqrt(2 * n))
    # group effects: r ~ N(0, sd), so var(r) = E[sd^2] = s^2 for HalfNormal(s)
    r_days = post["r_Subject"].sel(Subject__term="Days").values.ravel()
    _close(r_days.std(), 20.0, 20 / np.sqrt(n))


def test_predict_on_prior_draws_has_the_prior_scale(prior, sleepstudy):
    new = sleepstudy.iloc[[0, 9]][["Days", "Subject"]]  # Days 0 and 9
    pred = prior.predict(new, kind="linear", include_groups=False)
    assert pred.draws.sizes == {"chain": 1, "draw": DRAWS, "row": 2}
    draws = pred.draws.values.reshape(DRAWS, 2)
    # Intercept + Days * x: sd sqrt(50^2 + x^2 10^2)
    for j, x in enumerate((0.0, 9.0)):
        sd = np.sqrt(50**2 + (x * 10) ** 2)
        _close(draws[:, j].mean(), 250.0, sd / np.sqrt(DRAWS))
        _close(draws[:, j].std(ddof=1), sd, sd / np.sqrt(2 * DRAWS))
    full = prior.predict(kind="response", random_seed=2)
    assert full.draws.shape == (1, DRAWS, len(sleepstudy))
    # the simulated responses of the DataTree: mean 250 + 10 * E[Days] = 250
    sim = prior.idata["prior_predictive"]["Reaction"].values
    assert sim.shape == (1, DRAWS, len(sleepstudy))
    assert abs(sim.mean() - 250.0) < 10.0
    assert not np.allclose(sim[0, 0], sleepstudy["Reaction"])  # not the data


def test_prior_fit_is_marked_and_works_like_a_fit(prior, model):
    assert isinstance(prior, PriorFit) and isinstance(prior, bm.Fit)
    assert prior.is_prior and prior.settings.sampler == "prior"
    assert prior.idata["posterior"].attrs["draws_from"] == "prior"
    assert repr(prior).startswith("PRIOR DRAWS")
    table = prior.summary()
    assert list(table.index) == [
        "Intercept", "Days", "sd(Intercept|Subject)", "sd(Days|Subject)",
        "cor(Intercept,Days|Subject)", "sigma",
    ]
    assert table.loc["Days", "sd"] == pytest.approx(10, rel=0.1)
    assert set(prior.ranef()) == {"Subject"}
    with pytest.raises(FitError, match="random_seed"):
        prior.save("prior.bmfit")


def test_same_seed_same_draws_and_chains(model):
    a = model.sample_prior(draws=50, random_seed=3)
    b = model.sample_prior(draws=50, random_seed=3)
    c = model.sample_prior(draws=50, random_seed=4)
    np.testing.assert_array_equal(a.posterior["Days"], b.posterior["Days"])
    assert not np.array_equal(a.posterior["Days"], c.posterior["Days"])
    split = model.sample_prior(draws=25, chains=2, random_seed=3)
    assert split.posterior["Days"].shape == (2, 25)
    np.testing.assert_array_equal(split.posterior["Days"].values.ravel(),
                                  a.posterior["Days"].values.ravel())


def test_plots_work_on_prior_draws(prior):
    plt.switch_backend("Agg")
    try:
        fig = bm.plot_ppc(prior)
        assert fig.axes
        fig = bm.plot_conditional(prior, "Days")
        assert fig.axes[0].get_xlabel() == "Days"
        fig = bm.plot_trace(prior, var_names=["Days"])
        assert len(fig.axes) == 2
    finally:
        plt.close("all")


def test_bad_arguments(model):
    with pytest.raises(SamplingError, match="draws=0"):
        model.sample_prior(draws=0)
    with pytest.raises(SamplingError, match="random_seed"):
        model.sample_prior(random_seed=-1)
    with pytest.raises(SamplingError, match="chains"):
        model.sample_prior(chains=1.5)
