"""Nothing lost: fit.save(path) and bm.load(path) round trips, versions, the user's data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmixed as bm
from bayesmixed.errors import ConvergenceWarning, FitError
from bayesmixed.io import EXTENSION, FORMAT_VERSION, read_metadata
from bayesmixed.results import Fit

FORMULA = "Reaction ~ Days + phase + (Days | Subject)"
PRIORS = {
    "Days": bm.Prior("Normal", mu=0, sigma=20),
    "sd(Subject)": bm.Prior("HalfNormal", sigma=50),
    "cor(Subject)": 2,
}


@pytest.fixture(scope="module")
def data(sleepstudy):
    out = sleepstudy.copy()
    out["phase"] = pd.Categorical(np.where(out["Days"] > 4, "late", "early"))
    out["week"] = pd.array(np.where(out["Days"] % 7 == 0, None, out["Days"] // 7), dtype="Int64")
    out["note"] = np.where(out["Days"] == 3, None, "ok")
    out.index = [f"row{i}" for i in range(len(out))]  # a non-default index
    return out


@pytest.fixture(scope="module")
def fitted(data):
    """A short fit; the user's frame is deep-copied first to show nothing changes it."""
    before = data.copy(deep=True)
    model = bm.Model(FORMULA, data, priors=PRIORS)
    with pytest.warns(ConvergenceWarning):  # short chains: honest warning
        fit = model.fit(draws=60, tune=60, chains=2, random_seed=7)
    return fit, before


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    fit, _ = fitted
    path = tmp_path_factory.mktemp("io") / "sleep.bmfit"
    assert fit.save(path) == path
    return path


@pytest.fixture(scope="module")
def loaded(saved):
    return bm.load(saved)


def test_summary_and_draws_identical(fitted, loaded):
    fit, _ = fitted
    pd.testing.assert_frame_equal(fit.summary(), loaded.summary())
    xr.testing.assert_identical(fit.idata, loaded.idata)
    np.testing.assert_array_equal(
        fit.posterior["r_Subject"].values, loaded.posterior["r_Subject"].values
    )
    pd.testing.assert_frame_equal(fit.fixef(), loaded.fixef())
    pd.testing.assert_frame_equal(fit.ranef()["Subject"], loaded.ranef()["Subject"])
    pd.testing.assert_frame_equal(fit.coef()["Subject"], loaded.coef()["Subject"])
    assert repr(fit) == repr(loaded)


def test_model_and_settings_identical(fitted, loaded):
    fit, _ = fitted
    assert isinstance(loaded, Fit)
    model, again = fit.model, loaded.model
    assert again.formula == model.formula
    assert (again.family, again.link, again.dropna) == (model.family, model.link, model.dropna)
    assert again.prior_overrides == model.prior_overrides
    assert again.priors.to_dict() == model.priors.to_dict()
    assert repr(again) == repr(model)
    assert loaded.settings == fit.settings
    assert loaded.sampling_time == fit.sampling_time
    pd.testing.assert_frame_equal(again.data, model.data)  # dtypes, NA, index, categories
    np.testing.assert_array_equal(again.design.common.X, model.design.common.X)


def test_predictions_identical(fitted, loaded):
    fit, _ = fitted
    new = pd.DataFrame({"Days": [0, 5, 9], "phase": ["early", "late", "late"],
                        "Subject": ["308", "309", "new"]})
    for args in ({}, {"data": new, "kind": "response", "new_groups": "gaussian"}):
        a = fit.predict(random_seed=3, **args)
        b = loaded.predict(random_seed=3, **args)
        xr.testing.assert_identical(a.draws, b.draws)


def test_user_dataframe_unchanged(fitted, data, saved):
    _, before = fitted
    pd.testing.assert_frame_equal(data, before)


def test_metadata(saved, fitted):
    meta = read_metadata(saved)
    assert meta["format"] == "bayesmixed-fit" and meta["format_version"] == FORMAT_VERSION
    assert meta["written_by"]["bayesmixed"] == bm.__version__
    assert {"bambi", "pymc", "numpyro", "arviz"} <= set(meta["written_by"])
    assert meta["model"]["formula"] == FORMULA
    assert meta["model"]["priors"]["cor(Subject)"] == {"eta": 2.0}
    assert meta["settings"]["random_seed"] == 7


def test_draws_open_with_xarray_and_arviz_alone(saved, fitted):
    fit, _ = fitted
    assert EXTENSION == ".bmfit"
    with xr.open_datatree(saved) as tree:  # no engine named: xarray recognises netCDF-4
        xr.testing.assert_identical(tree["posterior"].load(), fit.idata["posterior"])
        assert {"posterior", "sample_stats", "observed_data"} <= set(tree.children)
    import arviz as az

    tree = az.from_netcdf(saved)
    np.testing.assert_array_equal(
        tree["posterior"]["r_Subject"].values, fit.posterior["r_Subject"].values
    )


def rewrite_meta(source, target, **changes):
    """A copy of a saved fit with its metadata changed (as another version would write)."""
    tree = xr.open_datatree(source).load()
    tree.close()
    attrs = tree["bayesmixed"].attrs
    meta = json.loads(attrs["metadata"])
    meta.update(changes)
    attrs["metadata"] = json.dumps(meta)
    if "format_version" in changes:
        attrs["format_version"] = changes["format_version"]
    tree.to_netcdf(target, engine="h5netcdf")
    return target


@pytest.mark.parametrize(
    ("version", "words"),
    [
        (
            FORMAT_VERSION + 1,
            rf"written by bayesmixed 9\.9\.9 in file format {FORMAT_VERSION + 1}.*upgrade",
        ),
        (0, r"written by bayesmixed 9\.9\.9 in file format 0.*load it with bayesmixed 9\.9\.9"),
    ],
)
def test_other_format_versions_raise(saved, tmp_path, version, words):
    path = rewrite_meta(
        saved, tmp_path / "other.bmfit", format_version=version,
        written_by={"bayesmixed": "9.9.9"},
    )
    with pytest.raises(FitError, match=words):
        bm.load(path)


def test_newer_package_same_format_loads(saved, tmp_path, fitted):
    path = rewrite_meta(saved, tmp_path / "newer.bmfit", written_by={"bayesmixed": "0.9.0"})
    pd.testing.assert_frame_equal(bm.load(path).summary(), fitted[0].summary())


def test_not_a_fit(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(FitError, match="is not a bayesmixed fit"):
        bm.load(text)
    with pytest.raises(FitError, match="does not exist"):
        bm.load(tmp_path / "missing.bmfit")
    with pytest.raises(FitError, match="must be a file path"):
        bm.load(3)


def test_save_errors_and_overwrite(fitted, tmp_path):
    fit, _ = fitted
    with pytest.raises(FitError, match="does not exist"):
        fit.save(tmp_path / "no" / "such" / "folder.bmfit")
    path = tmp_path / "twice.bmfit"
    fit.save(path)
    fit.save(str(path))  # replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twice.bmfit"]  # no temp files


def test_unsavable_unused_column_is_left_out(fitted, data, tmp_path):
    fit, _ = fitted
    extra = data.assign(blob=[object()] * len(data))
    other = Fit(bm.Model(FORMULA, extra, priors=PRIORS), fit.idata, settings=fit.settings)
    with pytest.warns(UserWarning, match="'blob'.*leaves them out"):
        other.save(tmp_path / "blob.bmfit")
    again = bm.load(tmp_path / "blob.bmfit")
    assert "blob" not in again.model.data.columns
    pd.testing.assert_frame_equal(again.summary(), fit.summary())


def test_mismatched_model_raises(fitted, data, tmp_path):
    fit, _ = fitted
    fewer = data[data["Subject"] != "308"]
    other = Fit(bm.Model(FORMULA, fewer, priors=PRIORS), fit.idata, settings=fit.settings)
    other.save(tmp_path / "bad.bmfit")
    with pytest.raises(FitError, match="levels of 'Subject' differ"):
        bm.load(tmp_path / "bad.bmfit")
