"""Conditional effects: the grid, its numbers (equal to predict on it) and the figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

import bayesmixed as bm
import bayesmixed.plots
from bayesmixed.errors import DataError


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    plt.switch_backend("Agg")

    def refuse(*args, **kwargs):
        raise AssertionError("a plot called plt.show()")

    monkeypatch.setattr(plt, "show", refuse)
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def cbpp_fit():
    """Categorical (period) and numeric (size) predictors, a binomial response."""
    model = bm.Model(
        "cbind(incidence, size - incidence) ~ period + size + (1 | herd)", bm.datasets.cbpp()
    )
    return model.fit(draws=100, tune=200, chains=2, random_seed=5)


def _summary_of(fit, grid, **kwargs):
    pred = fit.predict(grid, **kwargs)
    flat = pred.draws.values.reshape(-1, len(grid))
    lower, upper = np.quantile(flat, [0.025, 0.975], axis=0)
    return flat.mean(axis=0), lower, upper


def test_names_are_public():
    for name in ("plot_conditional", "conditional_effects"):
        assert name in bm.__all__ and name in bm.plots.__all__
        assert callable(getattr(bm, name))


def test_population_values_equal_predict_on_grid(sleep_fit, sleepstudy):
    table = bm.conditional_effects(sleep_fit, "Days")
    assert list(table.columns) == ["Days", "mean", "lower", "upper"]  # no group column
    np.testing.assert_allclose(table["Days"], np.linspace(0, 9, 100))
    mean, lower, upper = _summary_of(sleep_fit, table[["Days"]], include_groups=False)
    np.testing.assert_allclose(table["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(table["lower"], lower, rtol=1e-12)
    np.testing.assert_allclose(table["upper"], upper, rtol=1e-12)
    # population mean line: Intercept + Days * x, averaged over draws
    post = sleep_fit.posterior
    line = post["Intercept"].mean().item() + post["Days"].mean().item() * table["Days"]
    np.testing.assert_allclose(table["mean"], line, rtol=1e-10)


def test_group_values_by_subject_equal_predict(sleep_fit):
    table = bm.conditional_effects(
        sleep_fit, "Days", by="Subject", include_groups=True, resolution=10
    )
    assert len(table) == 10 * 18
    assert set(table["Subject"]) == set(sleep_fit.design.factors[0].levels)
    grid = table[["Days", "Subject"]]
    mean, lower, upper = _summary_of(sleep_fit, grid, include_groups=True)
    np.testing.assert_allclose(table["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(table[["lower", "upper"]].T, [lower, upper], rtol=1e-12)


def test_new_group_band_is_wider(sleep_fit):
    """include_groups without a level: a new subject, drawn from the fitted normal."""
    pop = bm.conditional_effects(sleep_fit, "Days", resolution=5)
    new = bm.conditional_effects(
        sleep_fit, "Days", include_groups=True, resolution=5, random_seed=1
    )
    assert new["Subject"].nunique() == 1 and new["Subject"].iloc[0] not in set(
        sleep_fit.design.factors[0].levels
    )
    assert ((new["upper"] - new["lower"]) > 1.5 * (pop["upper"] - pop["lower"])).all()
    again = bm.conditional_effects(
        sleep_fit, "Days", include_groups=True, resolution=5, random_seed=1
    )
    np.testing.assert_array_equal(new["mean"], again["mean"])


def test_held_values_mean_and_reference_level(cbpp_fit):
    data = cbpp_fit.design.data
    along_size = bm.conditional_effects(cbpp_fit, "size")
    assert (along_size["period"] == "1").all()  # reference level (first category)
    assert list(along_size.columns) == ["size", "period", "mean", "lower", "upper"]
    along_period = bm.conditional_effects(cbpp_fit, "period")
    assert list(along_period["period"]) == ["1", "2", "3", "4"]
    # a count of the binomial response (here also a predictor): its mean, rounded
    assert along_period["size"].iloc[0] == round(data["size"].mean())
    mean, lower, upper = _summary_of(
        cbpp_fit, along_period[["period", "size"]], include_groups=False
    )
    np.testing.assert_allclose(along_period["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(along_period["lower"], lower, rtol=1e-12)
    np.testing.assert_allclose(along_period["upper"], upper, rtol=1e-12)
    held = bm.conditional_effects(cbpp_fit, "size", conditions={"period": "3"})
    assert (held["period"] == "3").all()
    assert (held["mean"] < along_size["mean"]).all()  # period 3 has lower incidence


def test_linear_kind_and_binomial_response_counts(cbpp_fit):
    linear = bm.conditional_effects(cbpp_fit, "period", kind="linear")
    mean = bm.conditional_effects(cbpp_fit, "period")
    np.testing.assert_allclose(mean["mean"], _mean_of_inverse_logit(cbpp_fit, linear))
    resp = bm.conditional_effects(cbpp_fit, "period", kind="response", random_seed=2)
    # trials are whole numbers (rounded mean) and the band is of proportions
    assert resp["size"].iloc[0] == round(cbpp_fit.design.data["size"].mean())
    assert ((resp["lower"] >= 0) & (resp["upper"] <= 1)).all()


def _mean_of_inverse_logit(fit, linear_table):
    grid = linear_table[["period", "size"]]
    eta = fit.predict(grid, kind="linear", include_groups=False).draws.values
    return (1 / (1 + np.exp(-eta))).reshape(-1, len(grid)).mean(axis=0)


def test_plot_numeric_x_lines_labels(sleep_fit):
    fig = bm.plot_conditional(sleep_fit, "Days", points=True)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert len(ax.lines) == 1 and len(ax.collections) == 2  # band + observed points
    assert ax.get_xlabel() == "Days" and ax.get_ylabel() == "Reaction"
    table = bm.conditional_effects(sleep_fit, "Days")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), table["mean"])
    assert ax.get_legend() is None


def test_plot_by_has_a_line_and_legend_entry_per_level(sleep_fit):
    fig = bm.plot_conditional(sleep_fit, "Days", by="Subject", include_groups=True)
    (ax,) = fig.axes
    levels = sleep_fit.design.factors[0].levels
    assert len(ax.lines) == len(levels)
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "Subject"
    assert sorted(t.get_text() for t in legend.get_texts()) == sorted(levels)


def test_plot_categorical_x_with_panels(cbpp_fit):
    fig = bm.plot_conditional(cbpp_fit, "size", panels="period", kind="linear")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [f"period = {p}" for p in "1234"]
    assert all(len(ax.lines) == 1 for ax in visible)
    assert visible[0].get_ylabel() == "incidence (proportion) (linear predictor, logit link)"
    fig = bm.plot_conditional(cbpp_fit, "period", points=True)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert ax.get_xlabel() == "period" and ax.get_ylabel() == "incidence (proportion)"
    assert len(ax.containers) == 1  # one errorbar set: a point and bar per category


def test_bad_arguments_name_the_column(sleep_fit):
    with pytest.raises(DataError, match=r"'day'.*'Days'"):
        bm.plot_conditional(sleep_fit, "day")
    with pytest.raises(DataError, match="by='Days' is already used as x"):
        bm.conditional_effects(sleep_fit, "Days", by="Days")
    with pytest.raises(DataError, match="'Reaction'"):
        bm.conditional_effects(sleep_fit, "Reaction")
    with pytest.raises(DataError, match="conditions name column"):
        bm.conditional_effects(sleep_fit, "Days", conditions={"Age": 3})
    with pytest.raises(DataError, match="which the plot varies"):
        bm.conditional_effects(sleep_fit, "Days", conditions={"Days": 3})
    with pytest.raises(ValueError, match="ci_prob"):
        bm.conditional_effects(sleep_fit, "Days", ci_prob=1.5)
    with pytest.raises(TypeError, match=r"Model.fit\(\)"):
        bm.plot_conditional("fit", "Days")
