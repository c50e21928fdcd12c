"""The design evaluates new data: row labels, ids by value, interaction keys, formulae syntax.

Regression tests of issue 10, bugs 3 (row labels after dropna), 4 (ids by value), 5 (tuple
keys of ``a:b``), 8 (literals, ``I()``, ``bs()``, ``Q()``, transforms inside the bar,
unicode and backtick names) and the datetime / mixed-type / link-key parts of bug 11.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmixed as bm
from bayesmixed.design import Rows
from bayesmixed.errors import DataError, FamilyError, PredictionError

K = dict(draws=150, tune=150, chains=2, random_seed=1)


def quiet_fit(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short runs: convergence warnings expected
        return model.fit(**{**K, **kw})


def design(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.Model(formula, data, **kw).design


@pytest.fixture(scope="module")
def sleep():
    return bm.datasets.sleepstudy()


@pytest.fixture(scope="module")
def int_sleep(sleep):
    return sleep.assign(Subject=sleep["Subject"].astype(int))


@pytest.fixture(scope="module")
def int_fit(int_sleep):
    """Subject ids as integers (bug 4)."""
    return quiet_fit(bm.Model("Reaction ~ Days + (Days | Subject)", int_sleep))


# -- row labels (bug 3) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gappy():
    """sleepstudy indexed from 1000, with a missing response in row 1005 (dropped)."""
    data = bm.datasets.sleepstudy()
    data.index = data.index + 1000
    data.loc[1005, "Reaction"] = np.nan
    return data


@pytest.fixture(scope="module")
def gappy_fit(gappy):
    with pytest.warns(UserWarning, match="Dropped 1 of 180 rows"):
        model = bm.Model("Reaction ~ Days + (Days | Subject)", gappy)
        model.design
    return quiet_fit(model)


def test_observed_predictions_keep_the_index_after_dropna(gappy, gappy_fit):
    summary = gappy_fit.predict(kind="linear").summary()
    expected = gappy.index.drop(1005)
    assert list(summary.index) == list(expected)
    assert list(gappy_fit.predict().draws["row"].values) == list(expected)
    joined = gappy.join(summary)
    assert joined["mean"].isna().tolist() == [label == 1005 for label in gappy.index]
    # each joined row carries the prediction of its own row: predict it again as new data
    again = gappy_fit.predict(gappy.drop(index=1005), kind="linear").summary()
    np.testing.assert_allclose(joined["mean"].drop(1005), again["mean"], rtol=1e-12)
    # rows after the gap: the prediction follows the data (Days of each subject's row)
    row = gappy.loc[1010]
    alone = gappy_fit.predict(gappy.loc[[1010]], kind="linear").summary()
    assert alone.index.tolist() == [1010]
    assert joined.loc[1010, "mean"] == pytest.approx(alone.loc[1010, "mean"], rel=1e-12)
    assert row["Days"] == 0  # a different subject's first day: a misaligned join would differ


def test_log_likelihood_of_a_gappy_fit_has_one_value_per_used_row(gappy_fit):
    tree = gappy_fit.log_likelihood()
    assert tree["log_likelihood"]["Reaction"].sizes["__obs__"] == 179


@pytest.mark.parametrize(
    "index",
    [
        pd.Index([f"obs{i}" for i in range(180)], name="obs"),
        pd.RangeIndex(1000, 1180),
        pd.MultiIndex.from_arrays(
            [np.repeat(np.arange(18), 10), np.tile(np.arange(10), 18)], names=["s", "d"]
        ),
        pd.Index(np.linspace(0.5, 90, 180)),
    ],
    ids=["strings", "from-1000", "multiindex", "floats"],
)
def test_design_keeps_the_row_labels(sleep, index):
    data = sleep.set_axis(index)
    data.iloc[3, 0] = np.nan  # Reaction of the fourth row missing
    des = design("Reaction ~ Days + (Days | Subject)", data)
    expected = index.delete(3)
    assert des.row_labels.equals(expected)
    rows = des.evaluate()
    assert isinstance(rows, Rows)
    assert rows.labels.equals(expected)
    assert rows.X.shape == (179, 2)
    new = des.evaluate(data.iloc[10:13])
    assert new.labels.equals(index[10:13])
    assert data.iloc[3, 0] != data.iloc[3, 0]  # the user's frame is untouched (still NaN)


def test_predict_keeps_string_and_multiindex_labels(sleep_fit, sleepstudy):
    new = sleepstudy.iloc[[0, 11, 25]]
    by_string = new.set_axis(pd.Index(["a", "b", "c"], name="id"))
    summary = sleep_fit.predict(by_string, kind="linear").summary()
    assert summary.index.equals(by_string.index)
    multi = new.set_axis(pd.MultiIndex.from_tuples([("x", 1), ("x", 2), ("y", 1)],
                                                   names=["site", "visit"]))
    pred = sleep_fit.predict(multi, kind="linear")
    out = pred.summary()
    assert out.index.equals(multi.index)
    assert list(pred.draws["row"].values) == [("x", 1), ("x", 2), ("y", 1)]
    joined = multi.join(out)
    np.testing.assert_allclose(joined["mean"].to_numpy(), summary["mean"].to_numpy())


def test_multiindex_fit_joins_back(sleep):
    data = sleep.set_axis(
        pd.MultiIndex.from_arrays([sleep["Subject"], sleep["Days"]], names=["s", "d"])
    )
    data.iloc[7, 0] = np.nan
    fit = quiet_fit(bm.Model("Reaction ~ Days + (1 | Subject)", data), draws=60, tune=60)
    summary = fit.predict(kind="linear").summary()
    assert summary.index.names == ["s", "d"]
    joined = data.join(summary)
    assert int(joined["mean"].isna().sum()) == 1
    assert np.isnan(joined["mean"].iloc[7])
    again = fit.predict(data.drop(index=data.index[7]), kind="linear").summary()
    np.testing.assert_allclose(joined["mean"].dropna(), again["mean"], rtol=1e-12)


# -- ids matched by value (bug 4) ------------------------------------------------------------


def test_int_ids_found_as_floats_and_numpy_ints(int_fit):
    observed = int_fit.predict(kind="linear")
    # row of subject 308, day 3 in the fitted data
    design_ = int_fit.design
    pos = np.flatnonzero((design_.data["Subject"] == 308) & (design_.data["Days"] == 3))[0]
    expected = observed.draws.values[..., pos]
    for value in (308.0, np.int64(308), np.float32(308.0), 308):
        new = pd.DataFrame({"Days": [3], "Subject": [value]})
        pred = int_fit.predict(new, kind="linear")  # new_groups="error": must be seen
        np.testing.assert_allclose(pred.draws.values[..., 0], expected, rtol=1e-12)


def test_float_id_with_uncertainty_is_not_a_new_subject(int_fit):
    """Bug 4: 308.0 must be subject 308, not a random subject (293 vs 251 at day 9)."""
    new = pd.DataFrame({"Days": [9], "Subject": [308.0]})
    pred = int_fit.predict(new, kind="linear", new_groups="uncertainty", random_seed=2)
    same = int_fit.predict(pd.DataFrame({"Days": [9], "Subject": [308]}), kind="linear")
    np.testing.assert_allclose(pred.draws.values, same.draws.values, rtol=1e-12)
    assert float(pred.draws.mean()) > 330  # subject 308 is slow: ~ 470 ms at day 9
    assert int_fit.design.factor("Subject").levels[:3] == ["308", "309", "310"]


def test_float_ids_match_ints_by_value(sleep):
    data = sleep.assign(Subject=sleep["Subject"].astype(float))
    des = design("Reaction ~ Days + (1 | Subject)", data)
    fac = des.factor("Subject")
    assert fac.levels[:2] == ["308.0", "309.0"]  # labels as the data print them
    index, _ = fac.locate(pd.DataFrame({"Subject": [309, 308.0, np.int16(310), 1]}))
    assert index.tolist() == [1, 0, 2, -1]


def test_string_ids_stay_strings(sleep):
    data = sleep.assign(Subject="s" + sleep["Subject"].astype(str).str.zfill(4))
    fac = design("Reaction ~ Days + (1 | Subject)", data).factor("Subject")
    index, _ = fac.locate(pd.DataFrame({"Subject": ["s0308", "0308", "s308"]}))
    assert index.tolist() == [0, -1, -1]
    # text that looks like a number is not a number: "01" is not 1
    codes = pd.DataFrame({"y": np.arange(20.0), "g": ["01", "02", "1", "2"] * 5})
    fac = design("y ~ 1 + (1 | g)", codes).factor("g")
    assert fac.levels == ["1", "01", "2", "02"] or sorted(fac.levels) == ["01", "02", "1", "2"]
    index, _ = fac.locate(pd.DataFrame({"g": [1, "01", 2.0]}))
    assert [fac.levels[i] for i in index] == ["1", "01", "2"]


def test_categorical_ids_keep_category_order_and_match_values(sleep):
    order = sorted(sleep["Subject"].unique(), reverse=True)
    data = sleep.assign(Subject=pd.Categorical(sleep["Subject"], categories=order))
    fac = design("Reaction ~ Days + (1 | Subject)", data).factor("Subject")
    assert fac.levels == order
    int_cat = sleep.assign(Subject=pd.Categorical(sleep["Subject"].astype(int)))
    fac = design("Reaction ~ Days + (1 | Subject)", int_cat).factor("Subject")
    index, _ = fac.locate(pd.DataFrame({"Subject": [308.0, 372, "308"]}))
    assert [fac.levels[i] for i in index] == ["308", "372", "308"]


def test_numeric_levels_in_numeric_order():
    data = pd.DataFrame({"y": np.arange(12.0), "g": [10, 2, 1, 33] * 3})
    assert design("y ~ 1 + (1 | g)", data).factor("g").levels == ["1", "2", "10", "33"]
    text = data.assign(g="s" + data["g"].astype(str))
    assert design("y ~ 1 + (1 | g)", text).factor("g").levels == ["s1", "s2", "s10", "s33"]


# -- interaction keys (bug 5) ----------------------------------------------------------------


def test_interaction_keys_are_value_tuples():
    data = pd.DataFrame(
        {
            "y": np.arange(12.0),
            "a": ["x:y", "x", "p", "p"] * 3,
            "b": ["z", "y:z", "q", "r"] * 3,
        }
    )
    fac = design("y ~ 1 + (1 | a:b)", data).factor("a:b")
    assert len(fac.levels) == 4
    assert len(set(fac.levels)) == 4  # labels stay unique
    assert set(fac.keys) == {("x:y", "z"), ("x", "y:z"), ("p", "q"), ("p", "r")}
    assert "p:q" in fac.levels
    # both pairs print "x:y:z": shown as tuples instead, so coordinates stay unique
    assert {"('x:y', 'z')", "('x', 'y:z')"} <= set(fac.levels)
    first, second = fac.index[0], fac.index[1]
    assert first != second
    index, _ = fac.locate(pd.DataFrame({"a": ["x", "x:y", "x:y"], "b": ["y:z", "z", "y"]}))
    assert index.tolist() == [second, first, -1]


def test_interaction_levels_sort_by_each_variable():
    data = pd.DataFrame({"y": np.arange(8.0), "a": ["s10", "s2"] * 4,
                         "b": [10, 10, 2, 2, 1.5, 1.5, 1.25, 1.25]})
    fac = design("y ~ 1 + (1 | a:b)", data).factor("a:b")
    assert fac.levels == ["s2:1.25", "s2:1.5", "s2:2.0", "s2:10.0",
                          "s10:1.25", "s10:1.5", "s10:2.0", "s10:10.0"]
    assert [fac.levels[i] for i in fac.index[:2]] == ["s10:10.0", "s2:10.0"]


def test_interaction_of_numbers_matches_by_value(sleep):
    data = sleep.assign(day_group=(sleep["Days"] // 5).astype(int),
                        Subject=sleep["Subject"].astype(int))
    fac = design("Reaction ~ Days + (1 | Subject:day_group)", data).factor("Subject:day_group")
    assert fac.levels[:2] == ["308:0", "308:1"]
    index, _ = fac.locate(pd.DataFrame({"Subject": [308.0, 309], "day_group": [1, 0.0]}))
    assert [fac.levels[i] for i in index] == ["308:1", "309:0"]


def test_predict_new_interaction_level_named_in_the_error(sleep):
    data = pd.DataFrame(
        {"y": np.random.default_rng(1).normal(size=40), "a": ["x:y", "x"] * 20,
         "b": ["z", "y:z"] * 20}
    )
    fit = quiet_fit(bm.Model("y ~ 1 + (1 | a:b)", data), draws=40, tune=60, chains=1)
    ok = fit.predict(pd.DataFrame({"a": ["x", "x:y"], "b": ["y:z", "z"]}), kind="linear")
    observed = fit.predict(kind="linear").draws.values
    np.testing.assert_allclose(ok.draws.values, observed[..., [1, 0]], rtol=1e-12)
    with pytest.raises(PredictionError, match=r"'x:y:y:z'.*'a:b'"):
        fit.predict(pd.DataFrame({"a": ["x:y"], "b": ["y:z"]}))


# -- everything formulae accepts (bug 8) -----------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "column", "values"),
    [
        ("Reaction ~ np.log(Days + 1) + (1 | Subject)", "np.log(Days + 1)",
         lambda d: np.log(d["Days"] + 1)),
        ("Reaction ~ Days + I(Days**2) + (1 | Subject)", "I(Days ** 2)",
         lambda d: d["Days"] ** 2),
        ("Reaction ~ Q('my col') + (1 | Subject)", "my col", lambda d: d["Days"]),
        ('Reaction ~ Q("my col") + (1 | Subject)', "my col", lambda d: d["Days"]),
        ("Reaction ~ `my col` + (1 | Subject)", "my col", lambda d: d["Days"]),
        ("Reaction ~ días + (1 | sujeto_ñ)", "días", lambda d: d["Days"]),
    ],
)
def test_literals_calls_and_names_build(sleep, formula, column, values):
    data = sleep.assign(**{"my col": sleep["Days"], "días": sleep["Days"],
                           "sujeto_ñ": sleep["Subject"]})
    des = design(formula, data)
    pos = des.common.columns.index(column)
    np.testing.assert_allclose(des.common.X[:, pos], values(sleep))
    new = des.evaluate(data.iloc[[3, 40]])
    np.testing.assert_allclose(new.X, des.common.X[[3, 40]])


def test_spline_and_transform_inside_the_bar(sleep):
    des = design("Reaction ~ bs(Days, df=4) + (Days + I(Days**2) | Subject)", sleep)
    assert des.common.X.shape == (180, 5)
    fac = des.factor("Subject")
    assert fac.terms == ["Intercept", "Days", "I(Days ** 2)"]
    np.testing.assert_allclose(fac.X[:, 2], sleep["Days"] ** 2)
    new = des.evaluate(sleep.iloc[[5, 17]])
    np.testing.assert_allclose(new.X, des.common.X[[5, 17]], atol=1e-12)
    np.testing.assert_allclose(new.groups[0].X, fac.X[[5, 17]])


@pytest.mark.parametrize("engine", [{}, {"sampler": "gibbs"}, {"marginalize": False}],
                         ids=["marginal", "gibbs", "nuts"])
def test_transforms_fit_and_predict_on_every_engine(sleep, engine):
    data = sleep.assign(sujeto_ñ=sleep["Subject"])
    model = bm.Model("Reaction ~ np.log(Days + 1) + (1 + I(Days / 10) | sujeto_ñ)", data)
    fit = quiet_fit(model, **engine)
    summary = fit.summary()
    assert "np.log(Days + 1)" in summary.index
    assert "sd(I(Days / 10)|sujeto_ñ)" in summary.index
    # the slope of log(days + 1) is clearly positive in sleepstudy (~ 20 ms per log-day)
    assert summary.loc["np.log(Days + 1)", "mean"] > 5
    observed = fit.predict(kind="linear").draws.values
    new = fit.predict(data.iloc[[0, 99]], kind="linear").draws.values
    np.testing.assert_allclose(new, observed[..., [0, 99]], rtol=1e-10)


def test_unicode_and_backtick_grouping_factors(sleep):
    data = sleep.rename(columns={"Subject": "sujeto_ñ"}).assign(**{"my group": sleep["Subject"]})
    assert design("Reaction ~ Days + (1 | sujeto_ñ)", data).factors[0].label == "sujeto_ñ"
    des = design("Reaction ~ Days + (1 | `my group`)", data)
    assert des.factors[0].label == "my group"
    assert len(des.factors[0].levels) == 18
    renamed = sleep.rename(columns={"Reaction": "my y"})
    for formula in ("`my y` ~ Days + (1 | Subject)", "Q('my y') ~ Days + (1 | Subject)"):
        des = design(formula, renamed)
        assert des.response_name == "my y"
        np.testing.assert_allclose(des.common.response, sleep["Reaction"])


# -- types formulae cannot take, link keys (bug 11) ------------------------------------------


def test_datetime_predictor_names_column_dtype_and_fix(sleep):
    data = sleep.assign(when=pd.Timestamp("2020-01-01") + pd.to_timedelta(sleep["Days"], "D"))
    with pytest.raises(DataError, match=r"'when'.*datetime64.*\.dt\.days"):
        design("Reaction ~ when + (1 | Subject)", data)
    data = sleep.assign(gap=pd.to_timedelta(sleep["Days"], "D"))
    with pytest.raises(DataError, match=r"'gap'.*timedelta64.*total_seconds"):
        design("Reaction ~ gap + (1 | Subject)", data)
    data = sleep.assign(when=[pd.Timestamp("2020-01-01")] * 180)
    data["when"] = data["when"].astype(object)
    with pytest.raises(DataError, match=r"'when'.*dates"):
        design("Reaction ~ when + (1 | Subject)", data)


def test_mixed_object_column_is_refused(sleep):
    dose = [int(d) if d <= 4 else "high" for d in sleep["Days"]]
    data = sleep.assign(dose=pd.Series(dose, index=sleep.index, dtype=object))
    with pytest.raises(DataError, match=r"'dose'.*mixes values of types int, str"):
        design("Reaction ~ dose + (1 | Subject)", data)


def test_date_as_grouping_factor_is_fine(sleep):
    data = sleep.assign(day=pd.Timestamp("2020-01-01") + pd.to_timedelta(sleep["Days"], "D"))
    fac = design("Reaction ~ 1 + (1 | day)", data).factor("day")
    assert len(fac.levels) == 10
    index, _ = fac.locate(pd.DataFrame({"day": [pd.Timestamp("2020-01-03")]}))
    assert fac.levels[index[0]].startswith("2020-01-03")


def test_datetime_in_new_data_is_a_prediction_error(sleep_fit):
    new = pd.DataFrame({"Days": pd.to_datetime(["2020-01-01"]), "Subject": ["308"]})
    with pytest.raises(PredictionError, match=r"'Days'.*datetime64"):
        sleep_fit.predict(new)


def test_link_keys_are_checked(sleep):
    with pytest.raises(FamilyError, match=r"'m' \(did you mean 'mu'\?\).*'mu', 'sigma'"):
        design("Reaction ~ Days + (1 | Subject)", sleep, link={"m": "log"})
    counts = sleep.assign(k=(sleep["Reaction"] // 50).astype(int))
    with pytest.raises(FamilyError, match=r"'lambda'.*'mu', 'alpha'"):
        design("k ~ Days + (1 | Subject)", counts, family="negativebinomial",
               link={"lambda": "log"})
    ok = design("Reaction ~ Days + (1 | Subject)", sleep, link={"mu": "identity"})
    assert ok.common.link_name == "identity"


# -- errors of new data ------------------------------------------------------------------------


def test_new_data_errors_name_the_problem(sleep_fit):
    with pytest.raises(PredictionError, match=r"'Days' \(did you mean 'days'\?\)"):
        sleep_fit.predict(pd.DataFrame({"days": [1], "Subject": ["308"]}))
    with pytest.raises(PredictionError, match=r"Missing values in column\(s\) 'Days'"):
        sleep_fit.predict(pd.DataFrame({"Days": [1, np.nan], "Subject": ["308", "309"]}))
    with pytest.raises(PredictionError, match="DataFrame"):
        sleep_fit.predict({"Days": [1]})
