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


# -- every read/write failure is a FitError naming the path (issue 10, bug 10) ----------------


def test_damaged_files_raise_fit_error(saved, tmp_path):
    payload = saved.read_bytes()
    truncated = tmp_path / "truncated.bmfit"
    truncated.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(FitError, match=r"truncated\.bmfit.*(damaged|not a bayesmixed fit)"):
        bm.load(truncated)
    corrupt = tmp_path / "corrupt.bmfit"
    corrupt.write_bytes(payload[:512] + bytes(len(payload) - 512))
    with pytest.raises(FitError, match=r"corrupt\.bmfit"):
        bm.load(corrupt)
    noise = tmp_path / "noise.bmfit"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(FitError, match=r"noise\.bmfit.*is not a bayesmixed fit"):
        bm.load(noise)
    old = tmp_path / "old.bmfit"
    old.write_bytes(b"PK\x03\x04" + bytes(100))  # a file format 1 (ZIP) fit
    with pytest.raises(FitError, match=r"old\.bmfit.*file format 1"):
        bm.load(old)
    with pytest.raises(FitError, match=r"noise\.bmfit"):
        read_metadata(noise)


def test_other_netcdf_files_raise_fit_error(fitted, tmp_path):
    fit, _ = fitted
    plain = tmp_path / "idata.nc"
    fit.idata.to_netcdf(plain, engine="h5netcdf")  # an ArviZ file, not a saved fit
    with pytest.raises(FitError, match=r"idata\.nc.*no 'bayesmixed' group"):
        bm.load(plain)


def test_directories_and_missing_folders_raise_fit_error(fitted, tmp_path):
    fit, _ = fitted
    with pytest.raises(FitError, match=r"is a directory"):
        fit.save(tmp_path)
    with pytest.raises(FitError, match=r"is a directory"):
        bm.load(tmp_path)
    with pytest.raises(FitError, match=r"folder.*does not exist"):
        fit.save(tmp_path / "missing" / "fit.bmfit")
    with pytest.raises(FitError, match=r"missing.*does not exist"):
        bm.load(tmp_path / "missing" / "fit.bmfit")
    assert list(tmp_path.iterdir()) == []


# -- round trips: every engine, cbind, factors named like ArviZ dimensions ----------------------


def round_trip(fit, path, new=None):
    """Save, load, and check that summaries, draws and seeded predictions are identical."""
    fit.save(path)
    again = bm.load(path)
    pd.testing.assert_frame_equal(again.summary(), fit.summary())
    xr.testing.assert_identical(again.idata, fit.idata)
    for factor in fit.ranef():
        pd.testing.assert_frame_equal(again.ranef()[factor], fit.ranef()[factor])
    for args in ({}, {"kind": "response"},
                 {"data": new, "kind": "response", "new_groups": "gaussian"}):
        if args.get("data", 0) is None:
            continue
        a = fit.predict(random_seed=5, **args).draws
        b = again.predict(random_seed=5, **args).draws
        xr.testing.assert_identical(a, b)
    with xr.open_datatree(path) as tree:  # xarray alone reads the draws
        np.testing.assert_array_equal(
            tree["posterior"][fit.design.layout.var_names()[0]].values,
            fit.posterior[fit.design.layout.var_names()[0]].values,
        )
    return again


def quiet_fit(model, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(draws=100, tune=100, chains=2, random_seed=3, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"sampler": "numpyro", "marginalize": False}, {}, {"sampler": "gibbs"}],
    ids=["nuts", "marginal", "gibbs"],
)
def test_round_trip_every_engine(sleepstudy, tmp_path, kwargs):
    fit = quiet_fit(bm.Model("Reaction ~ Days + (Days | Subject)", sleepstudy), **kwargs)
    new = pd.DataFrame({"Days": [1, 8], "Subject": ["308", "new"]})
    again = round_trip(fit, tmp_path / "fit.bmfit", new)
    assert again.settings == fit.settings


def test_round_trip_cbind():
    cbpp = bm.datasets.cbpp()
    fit = quiet_fit(bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        again = round_trip(fit, Path(folder) / "cbpp.bmfit", cbpp.head(4))
    pd.testing.assert_frame_equal(again.model.data, fit.model.data)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("sample", {}), ("chain", {}), ("draw", {}), ("sample", {"sampler": "gibbs"})],
    ids=["sample", "chain", "draw", "sample-gibbs"],
)
def test_round_trip_factor_named_like_a_dimension(tmp_path, name, kwargs):
    """Bug 2: penicillin's factor ``sample`` saved but did not load."""
    pen = bm.datasets.penicillin().rename(columns={"sample": name})
    formula = f"diameter ~ 1 + (1 | plate) + (1 | {name})"
    fit = quiet_fit(bm.Model(formula, pen), **kwargs)
    assert fit.posterior[f"r_{name}"].dims[2] == f"{name}__level"
    again = round_trip(fit, tmp_path / f"{name}.bmfit", pen.head(3))
    assert list(again.ranef()[name].index) == list(fit.design.factor(name).levels)


def test_round_trip_clashing_predictor(sleepstudy, tmp_path):
    data = sleepstudy.rename(columns={"Days": "sigma"})
    fit = quiet_fit(bm.Model("Reaction ~ sigma + (1 | Subject)", data))
    again = round_trip(fit, tmp_path / "sigma.bmfit", data.head(3))
    assert "b_sigma" in again.summary().index


def test_round_trip_data_dtypes(sleepstudy, tmp_path):
    """Integers stay integers, categorical order and strings come back, so predictions match."""
    data = sleepstudy.assign(
        Days=sleepstudy["Days"].astype("int32"),
        level=pd.Categorical(np.where(sleepstudy["Days"] > 4, "high", "low"),
                             categories=["low", "high"], ordered=True),
        flag=sleepstudy["Days"] > 2,
        when=pd.Timestamp("2020-01-01") + pd.to_timedelta(sleepstudy["Days"], unit="D"),
        text=pd.array(np.where(sleepstudy["Days"] == 0, None, "x"), dtype="string"),
    )
    fit = quiet_fit(bm.Model("Reaction ~ Days + level + (1 | Subject)", data))
    again = round_trip(fit, tmp_path / "dtypes.bmfit", data.head(4))
    pd.testing.assert_frame_equal(again.model.data, data)
    assert again.model.data["level"].cat.categories.tolist() == ["low", "high"]
