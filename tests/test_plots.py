"""Plots: each draws headless (Agg) and we check what it drew (panels, lines, labels)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure

import bayesmixed as bm
from bayesmixed.errors import DataError, FitError

SUBJECTS = 18


@pytest.fixture(autouse=True)
def _no_show_no_leak(monkeypatch):
    """Headless (Agg); a plot must never show a figure; close what each test drew."""
    plt.switch_backend("Agg")

    def refuse(*args, **kwargs):
        raise AssertionError("a plot called plt.show()")

    monkeypatch.setattr(plt, "show", refuse)
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fixed_fit(sleepstudy):
    return bm.Model("Reaction ~ Days", sleepstudy).fit(
        draws=100, tune=200, chains=2, random_seed=3
    )


@pytest.fixture(scope="module")
def cbpp_fit():
    model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     bm.datasets.cbpp())
    return model.fit(draws=100, tune=200, chains=2, random_seed=4)


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def _legend_texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def test_plot_names_are_public():
    for name in ("plot_trace", "plot_fit", "plot_groups", "plot_forest", "plot_new_group",
                 "plot_new_group_pairs", "plot_ppc", "plot_correlations"):
        assert name in bm.__all__
        assert callable(getattr(bm, name))


# -- trace --------------------------------------------------------------------------------------


def test_plot_trace_rows_labelled_like_summary(sleep_fit, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig = bm.plot_trace(sleep_fit)
    assert isinstance(fig, Figure)
    labels = list(sleep_fit.summary().index)
    assert len(fig.axes) == 2 * len(labels)  # density and trace per parameter
    titles = _titles(fig)
    assert titles[::2] == labels and titles[1::2] == labels
    assert "cor(Intercept,Days|Subject)" in titles
    assert not any("dim_0" in t for t in titles)
    assert all(len(ax.lines) == 2 for ax in fig.axes)  # one line per chain
    density, trace = fig.axes[-2:]  # the bottom row names its axes, the others do not
    assert density.get_xlabel() == "parameter value" and trace.get_xlabel() == "draw"
    assert all(ax.get_xlabel() == "" for ax in fig.axes[:-2])
    assert list(tmp_path.iterdir()) == []  # nothing saved


def test_plot_trace_selects_by_label(sleep_fit):
    fig = bm.plot_trace(sleep_fit, var_names=["sigma", "cor(Intercept,Days|Subject)"],
                        combined=True)
    assert _titles(fig) == ["sigma", "sigma", "cor(Intercept,Days|Subject)",
                            "cor(Intercept,Days|Subject)"]
    assert len(fig.axes[0].lines) == 1  # chains pooled in the density
    with pytest.raises(FitError, match="sd\\(Days\\|Subject\\)"):
        bm.plot_trace(sleep_fit, var_names="sd(Days)")


def test_plot_trace_refuses_non_fit():
    with pytest.raises(TypeError, match=r"Model\.fit"):
        bm.plot_trace("not a fit")


# -- population-level fit -----------------------------------------------------------------------


def test_plot_fit_fixed_model_colours_by_subject(fixed_fit):
    fig = bm.plot_fit(fixed_fit, "Days", color_by="Subject", legend=True)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "Days" and ax.get_ylabel() == "Reaction"
    assert len(ax.lines) == 1  # the posterior mean
    bands = [c for c in ax.collections if c.__class__.__name__ == "FillBetweenPolyCollection"]
    assert len(bands) == 1
    scatters = [c for c in ax.collections if c not in bands]
    assert len(scatters) == SUBJECTS
    assert sum(len(s.get_offsets()) for s in scatters) == 180
    legend = _legend_texts(ax.get_legend())
    assert ax.get_legend().get_title().get_text() == "Subject"
    assert legend[:2] == ["308", "309"]  # the data first, then the mean and its band
    assert legend[-2:] == ["posterior mean (population level)", "94% interval of the mean"]
    mean = ax.lines[0].get_ydata()
    assert np.all(np.diff(mean) > 0)  # reaction time grows with days


def test_plot_fit_mixed_model_population_band(sleep_fit):
    fig = bm.plot_fit(sleep_fit, "Days", kind="response", ci_prob=0.5, random_seed=1)
    (ax,) = fig.axes
    assert ax.get_legend() is None
    assert "population level" in ax.get_title()
    x = ax.lines[0].get_xdata()
    np.testing.assert_array_equal(x, np.arange(10))


def test_plot_fit_errors(sleep_fit, fixed_fit):
    with pytest.raises(DataError, match="'Day'"):
        bm.plot_fit(sleep_fit, "Day")
    with pytest.raises(DataError, match="color_by"):
        bm.plot_fit(fixed_fit, "Days", color_by="Patient")
    with pytest.raises(DataError, match="conditions"):
        bm.plot_fit(sleep_fit, "Days", conditions={"Age": 3})
    with pytest.raises(ValueError, match="ci_prob"):
        bm.plot_fit(sleep_fit, "Days", ci_prob=94)


def test_plot_fit_binomial_proportions(cbpp_fit):
    fig = bm.plot_fit(cbpp_fit, "period")
    (ax,) = fig.axes
    assert ax.get_ylabel() == "incidence (proportion)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    low, high = ax.get_ylim()
    assert low >= -0.1 and high <= 1.1


# -- one panel per group ------------------------------------------------------------------------


def test_plot_groups_grid(sleep_fit):
    fig = bm.plot_groups(sleep_fit, "Days", ncols=3, random_seed=1)
    assert len(fig.axes) == SUBJECTS  # 6 x 3
    levels = list(sleep_fit.design.factor("Subject").levels)
    assert _titles(fig) == levels
    ylims = {ax.get_ylim() for ax in fig.axes}
    assert len(ylims) == 1  # shared y-limits
    for ax in fig.axes:
        assert len(ax.lines) == 1  # posterior predictive mean
        assert len(ax.collections) == 2  # band and data
        assert len(ax.collections[1].get_offsets()) == 10  # ten days per subject
    assert "Subject" in fig.get_suptitle()
    assert fig.get_supxlabel() == "Days" and fig.get_supylabel() == "Reaction"
    (legend,) = fig.legends  # one legend for the grid, naming data, mean and band
    assert _legend_texts(legend) == [
        "observed data", "posterior predictive mean", "94% interval of new observations"
    ]
    data, mean, band = legend.legend_handles
    assert len(data.get_offsets()) > 0  # a marker like the data's
    assert mean.get_color() == fig.axes[0].lines[0].get_color()
    assert band.__class__.__name__ == "Rectangle"  # a patch like the band's


def test_plot_groups_subset_and_layout(sleep_fit):
    fig = bm.plot_groups(sleep_fit, "Days", levels=["309", "308", "310", "330"], ncols=3,
                         kind="mean", sharey=False)
    assert _titles(fig) == ["309", "308", "310", "330"]  # two cells of the 2 x 3 grid removed
    assert _legend_texts(fig.legends[0]) == [
        "observed data", "posterior mean", "94% interval of the mean"
    ]
    assert "band of the mean" in fig.get_suptitle()
    with pytest.raises(FitError, match="'999'"):
        bm.plot_groups(sleep_fit, "Days", levels=["999"])
    with pytest.raises(FitError, match="'Patient'"):
        bm.plot_groups(sleep_fit, "Days", group="Patient")
    with pytest.raises(ValueError, match="ncols"):
        bm.plot_groups(sleep_fit, "Days", ncols=0)


def test_plot_groups_needs_groups(fixed_fit):
    with pytest.raises(FitError, match="no group terms"):
        bm.plot_groups(fixed_fit, "Days")


def test_plot_groups_binomial_response_is_a_proportion(cbpp_fit):
    fig = bm.plot_groups(cbpp_fit, "period", ncols=5, random_seed=2)
    assert len(fig.axes) == 15
    assert fig.get_supylabel() == "incidence (proportion)"
    # along a categorical x the mean and its interval are one marker with error bars
    assert _legend_texts(fig.legends[0]) == [
        "observed data", "posterior predictive mean, 94% interval of new observations"
    ]
    for ax in fig.axes:
        low, high = ax.get_ylim()
        assert low >= -0.2 and high <= 1.2


# -- forest -------------------------------------------------------------------------------------


def test_plot_forest_coef(sleep_fit):
    fig = bm.plot_forest(sleep_fit, "Days")
    labels_ax, forest_ax = fig.axes
    assert [t.get_text() for t in labels_ax.texts] == list(
        sleep_fit.design.factor("Subject").levels
    )
    assert forest_ax.get_xlabel() == "Days: fixed + Subject effect"
    # 18 x (50% + 94% interval) + the reference line at the fixed effect
    assert len(forest_ax.lines) == 2 * SUBJECTS + 1
    ref = forest_ax.lines[-1].get_xdata()[0]
    assert ref == pytest.approx(sleep_fit.fixef().loc["Days", "mean"])
    assert fig.get_suptitle() == (
        "Days by Subject: posterior mean, 50% and 94% intervals of each level's coefficient"
    )


def test_plot_forest_ranef_per_chain(sleep_fit):
    fig = bm.plot_forest(sleep_fit, "Intercept", kind="ranef", combined=False)
    forest_ax = fig.axes[1]
    assert len(forest_ax.lines) == 2 * SUBJECTS * 2 + 1  # two chains
    assert forest_ax.lines[-1].get_xdata()[0] == 0
    assert "deviation" in forest_ax.get_xlabel()
    assert fig.get_suptitle().endswith("each level's deviation")
    with pytest.raises(FitError, match="'Hours'"):
        bm.plot_forest(sleep_fit, "Hours")


# -- new group ----------------------------------------------------------------------------------


def test_plot_new_group(sleep_fit):
    fig = bm.plot_new_group(sleep_fit, "Days", random_seed=1)
    (ax,) = fig.axes
    assert ax.get_title() == "A new Subject: posterior predictive"
    assert len(ax.lines) == 1
    assert ax.get_xlabel() == "Days" and ax.get_ylabel() == "Reaction"
    assert _legend_texts(ax.get_legend()) == [
        "observed data (all Subject levels)",
        "posterior predictive mean, new Subject",
        "94% interval of new observations",
    ]
    band = ax.collections[1].get_paths()[0].vertices[:, 1]
    # a new subject is less certain than the population mean: the band is wide
    assert band.max() - band.min() > 150


def test_plot_new_group_without_data(sleep_fit):
    fig = bm.plot_new_group(sleep_fit, "Days", show_data=False, kind="mean", random_seed=1)
    (ax,) = fig.axes
    assert len(ax.collections) == 1
    assert _legend_texts(ax.get_legend()) == [
        "posterior mean, new Subject", "94% interval of the mean"
    ]
    with pytest.raises(ValueError, match="new_groups"):
        bm.plot_new_group(sleep_fit, "Days", new_groups="error")


def test_plot_new_group_pairs(sleep_fit):
    fig = bm.plot_new_group_pairs(sleep_fit, group="Subject", random_seed=1)
    assert "A new Subject" in fig.get_suptitle()
    xlabels = {ax.get_xlabel() for ax in fig.axes}
    assert {"Intercept", "Days"} <= xlabels
    contours = [ax for ax in fig.axes if ax.collections]
    assert len(contours) == 1  # one pair below the diagonal
    diagonal = [ax for ax in fig.axes if ax.lines]
    assert len(diagonal) == 2  # a density per coefficient


def test_plot_new_group_pairs_one_term(cbpp_fit):
    fig = bm.plot_new_group_pairs(cbpp_fit, kind="ranef", random_seed=1)
    assert len(fig.axes) == 1
    assert fig.axes[0].get_title() == "Intercept"


# -- predictive check and correlations -----------------------------------------------------------


def test_plot_ppc(sleep_fit):
    fig = bm.plot_ppc(sleep_fit, num_samples=20, random_seed=1)
    (ax,) = fig.axes
    assert ax.get_title() == "Posterior predictive check: Reaction ~ Days + (Days | Subject)"
    assert ax.get_xlabel() == "Reaction"
    assert len(ax.lines) == 21  # 20 replicated data sets and the observed one
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["replicated data", "observed data"]
    fig = bm.plot_ppc(sleep_fit, num_samples=5, random_seed=1, title="correlated slopes")
    assert fig.axes[0].get_title() == "correlated slopes"


def test_plot_ppc_binomial_titled_with_family(cbpp_fit):
    fig = bm.plot_ppc(cbpp_fit, kind="ecdf", num_samples=5, random_seed=1)
    (ax,) = fig.axes
    assert ax.get_title() == (
        "Posterior predictive check: cbind(incidence, size - incidence) ~ period + (1 | herd)"
        " (binomial)"
    )
    assert ax.get_xlabel() == "incidence"  # replicated counts, not proportions


def test_plot_correlations(sleep_fit, fixed_fit, cbpp_fit):
    fig = bm.plot_correlations(sleep_fit)
    (ax,) = fig.axes
    assert ax.get_title() == "cor(Intercept,Days|Subject)"
    assert ax.get_xlabel() == "correlation"
    assert ax.get_xlim() == (-1, 1)
    for fit in (fixed_fit, cbpp_fit):
        with pytest.raises(FitError, match="no correlated group effects"):
            bm.plot_correlations(fit)
