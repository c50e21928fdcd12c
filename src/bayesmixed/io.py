"""Save a fit to one file and load it back, losslessly: ``fit.save(path)``, ``bm.load(path)``.

The file is netCDF-4 (HDF5), written by xarray through h5netcdf, so the draws open with
xarray or ArviZ alone (``xarray.open_datatree(path)``, ``arviz.from_netcdf(path)``). The
documented extension is ``.bmfit``. Groups:

``posterior``, ``sample_stats``, ``observed_data``
    The fit's ArviZ DataTree, as it is (variables and dimensions named by
    :mod:`bayesmixed.layout`).
``bayesmixed``
    Attributes ``format`` and ``format_version`` (the file format), and ``metadata``: a
    JSON text with the versions of bayesmixed and of the libraries that wrote the file, the
    model (formula, formulas of family parameters, family, link, prior overrides,
    ``dropna``), the priors used (defaults
    with overrides), the sampler settings, the sampling time and how the data are stored.
``bayesmixed/data``
    The model's data frame (every column that can be stored; the columns the formula uses
    always) with its dtypes: categories and their order, integers and floats, strings,
    nullable dtypes and their missing values, and the row index.

On loading, the design is rebuilt from the formula and the data, and checked against the
saved posterior, so ``summary()``, ``ranef()`` and predictions with a seed give the same
results as before saving. Any failure to write or read (a missing folder, a directory, a
corrupt, truncated or foreign file, another file-format version) raises
:class:`~bayesmixed.errors.FitError` naming the path and the cause.

Examples
--------
>>> import bayesmixed as bm
>>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
...                bm.datasets.sleepstudy()).fit(random_seed=1)      # doctest: +SKIP
>>> fit.save("sleep.bmfit")                                          # doctest: +SKIP
>>> again = bm.load("sleep.bmfit")                                   # doctest: +SKIP
>>> again.summary().equals(fit.summary())                            # doctest: +SKIP
True
>>> import xarray as xr
>>> xr.open_datatree("sleep.bmfit")["posterior"]                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmixed.errors import FitError

if TYPE_CHECKING:
    from bayesmixed.results import Fit

__all__ = ["EXTENSION", "FORMAT", "FORMAT_VERSION", "read_metadata", "save"]

#: Name of the file format, stored in every file.
FORMAT = "bayesmixed-fit"
#: Version of the file format; bump it when the layout changes, and teach
#: :func:`bayesmixed.loading.load` to read the older versions it still supports. Version 1
#: was a ZIP of ``.npy`` arrays.
FORMAT_VERSION = 2
_READABLE = (2,)
#: The documented file extension (any extension works).
EXTENSION = ".bmfit"
_GROUP = "bayesmixed"
_DATA = f"{_GROUP}/data"
_ENGINE = "h5netcdf"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_LIBRARIES = (
    "bambi", "formulae", "pymc", "numpyro", "jax", "arviz", "xarray", "pandas", "numpy",
    "h5netcdf", "h5py",
)


class _Unsupported(Exception):
    """A value this format cannot store without loss."""


# -- save ------------------------------------------------------------------------------------


def save(fit: Fit, path: str | os.PathLike[str]) -> Path:
    """Write ``fit`` to ``path`` (replaced if it exists); see the module docstring.

    Parameters
    ----------
    fit : Fit
    path : str or os.PathLike
        The file to write; ``.bmfit`` is the documented extension.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    FitError
        The path is not a path, is a directory or its folder does not exist, the file
        cannot be written (the message gives the cause), or a used data column or the
        DataTree holds values that cannot be stored losslessly (Python objects).
    """
    import xarray as xr

    target = _as_path(path)
    if target.is_dir():
        raise FitError(f"Cannot save to {str(target)!r}: it is a directory; give a file "
                       f"name such as {str(target / ('fit' + EXTENSION))!r}.")
    if not target.parent.is_dir():
        raise FitError(f"Cannot save to {str(target)!r}: the folder {str(target.parent)!r} "
                       "does not exist.")
    from bayesmixed import __version__
    from bayesmixed.design import used_columns

    model = fit.model
    used = set(used_columns(model.spec, model.data.columns))
    writer = _Writer()
    data_info = writer.frame(model.data, used)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "written_by": {"bayesmixed": __version__, **_library_versions()},
        "written_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "model": {
            "formula": model.spec.formula,
            "parameter_formulas": [par.formula for par in model.spec.parameters],
            "family": model.family,
            "link": _jsonable(model.link),
            "dropna": model.dropna,
            "priors": _overrides_to_json(model.prior_overrides),
        },
        "family": fit.design.family_name,
        "priors": model.priors.to_dict(),
        "settings": _jsonable(dataclasses.asdict(fit.settings)),
        "sampling_time": float(fit.sampling_time),
        "data": data_info,
    }
    tree = fit.idata.copy()
    if _GROUP in tree.children:
        del tree[_GROUP]
    tree[_GROUP] = xr.DataTree(
        xr.Dataset(attrs={"format": FORMAT, "format_version": FORMAT_VERSION,
                          "metadata": json.dumps(meta)})
    )
    tree[_DATA] = xr.DataTree(xr.Dataset(writer.variables))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as err:
        raise FitError(f"Cannot save to {str(target)!r}: {type(err).__name__}: {err}") from err
    try:
        tree.to_netcdf(tmp, engine=_ENGINE)
        os.replace(tmp, target)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, Exception):
            raise FitError(
                f"Cannot save to {str(target)!r}: {type(err).__name__}: {err}"
            ) from err
        raise
    return target


def _as_path(path: Any) -> Path:
    if not isinstance(path, str | os.PathLike):
        raise FitError(f"path must be a file path (str or pathlib.Path), got "
                       f"{type(path).__name__}.")
    return Path(path).expanduser()


def _library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


class _Writer:
    """Collects the data frame's arrays as xarray variables and describes them in JSON."""

    def __init__(self) -> None:
        self.variables: dict[str, Any] = {}

    def array(self, name: str, values: Any, dim: str) -> dict[str, Any]:
        import xarray as xr

        arr = np.asarray(values)
        info: dict[str, Any] = {"var": name}
        if arr.dtype.kind in "OT":
            flat = arr.reshape(-1).tolist()
            if not all(isinstance(v, str) for v in flat):
                kinds = sorted({type(v).__name__ for v in flat if not isinstance(v, str)})
                raise _Unsupported(f"Python objects of type {', '.join(kinds)}")
            info["restore"] = "object" if arr.dtype.kind == "O" else "T"
            arr = np.asarray(flat, dtype=object)
        elif arr.dtype.kind == "c":
            raise _Unsupported("complex numbers")
        elif arr.dtype.kind == "U":
            info["restore"] = arr.dtype.str
            arr = arr.astype(object)
        self.variables[name] = xr.Variable((dim,), arr)
        return info

    def frame(self, frame: pd.DataFrame, used: set[str]) -> dict[str, Any]:
        columns = []
        skipped = []
        for i, name in enumerate(frame.columns):
            if not isinstance(name, str | int | float):
                raise FitError(f"Cannot save a data column named {name!r}: names must be "
                               "strings or numbers.")
            try:
                info = self.series(f"column{i}", frame.iloc[:, i], "row")
            except _Unsupported as err:
                if name in used:
                    raise FitError(
                        f"Cannot save the data column {name!r} ({frame.iloc[:, i].dtype}): "
                        f"it holds {err}; convert it to numbers, strings or a categorical."
                    ) from err
                skipped.append(name)
                continue
            columns.append({"name": name, **info})
        if skipped:
            from bayesmixed.validate import warn_user

            warn_user(
                f"Column(s) {', '.join(map(repr, skipped))} of the data are not used by the "
                "model and cannot be saved losslessly; the saved fit leaves them out.",
                UserWarning,
            )
        index = frame.index
        if isinstance(index, pd.RangeIndex):
            index_info: dict[str, Any] = {
                "kind": "range",
                "start": index.start,
                "stop": index.stop,
                "step": index.step,
            }
        elif isinstance(index, pd.MultiIndex):
            raise FitError("Cannot save data with a MultiIndex; call data.reset_index() first.")
        else:
            try:
                index_info = {"kind": "values",
                              **self.series("index", index.to_series(), "row")}
            except _Unsupported as err:
                raise FitError(f"Cannot save the data's index: it holds {err}.") from err
        index_info["name"] = _jsonable(index.name)
        return {"columns": columns, "index": index_info, "rows": len(frame)}

    def series(self, name: str, series: pd.Series, dim: str) -> dict[str, Any]:
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            return {
                "kind": "categorical",
                "ordered": bool(dtype.ordered),
                "codes": self.array(name, series.cat.codes.to_numpy(), dim),
                "categories": self.series(
                    f"{name}_categories", dtype.categories.to_series(), f"{name}_category"
                ),
            }
        if isinstance(dtype, np.dtype) and dtype.kind in "biufmMU":
            return {"kind": "numpy", "dtype": dtype.str,
                    "values": self.array(name, series.to_numpy(), dim)}
        mask = series.isna().to_numpy()
        if isinstance(dtype, pd.StringDtype) or pd.api.types.is_object_dtype(dtype):
            values = series.to_numpy(dtype=object).copy()
            values[mask] = ""
            return {
                "kind": "text",
                "dtype": str(dtype),
                "na_value": _na_name(getattr(dtype, "na_value", None)),
                "values": self.array(name, values, dim),
                "mask": self.array(f"{name}_mask", mask, dim),
            }
        numpy_dtype = getattr(dtype, "numpy_dtype", None)
        if numpy_dtype is not None and numpy_dtype.kind in "biuf":
            return {
                "kind": "masked",
                "dtype": str(dtype),
                "values": self.array(
                    name, series.to_numpy(dtype=numpy_dtype, na_value=numpy_dtype.type(0)), dim
                ),
                "mask": self.array(f"{name}_mask", mask, dim),
            }
        raise _Unsupported(f"values of dtype {dtype}")


def _na_name(value: Any) -> str | None:
    if value is None:
        return None
    if value is pd.NA:
        return "NA"
    return "nan"


def _overrides_to_json(overrides: Mapping[str, Any]) -> dict[str, Any]:
    from bayesmixed.priors import Prior, _as_prior

    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, int | float | np.number) and not isinstance(value, bool):
            out[key] = {"eta": float(value)}
        else:
            prior = value if isinstance(value, Prior) else _as_prior(value, key)
            out[key] = {"prior": prior.to_dict()}
    return out



def _jsonable(value: Any) -> Any:
    """Attributes and options as JSON (NumPy scalars and arrays become Python values)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


# -- load ------------------------------------------------------------------------------------


def _check_readable(target: Path) -> None:
    if not target.exists():
        raise FitError(f"No saved fit at {str(target)!r}: the file does not exist.")
    if target.is_dir():
        raise FitError(f"Cannot load {str(target)!r}: it is a directory, not a saved fit "
                       f"(a {EXTENSION} file written by fit.save()).")


def _open(target: Path) -> Any:
    """The file's DataTree, read into memory and closed."""
    import xarray as xr

    _check_readable(target)
    try:
        with open(target, "rb") as handle:
            magic = handle.read(8)
    except OSError as err:
        raise FitError(f"Cannot read {str(target)!r}: {type(err).__name__}: {err}") from err
    if magic.startswith(b"PK\x03\x04"):
        raise FitError(
            f"{str(target)!r} is a fit saved in file format 1 (a ZIP archive) by an earlier "
            f"bayesmixed; this bayesmixed reads format(s) {', '.join(map(str, _READABLE))}: "
            "load it with the bayesmixed that wrote it, and refit or save it again."
        )
    if not magic.startswith(_HDF5_MAGIC):
        raise FitError(
            f"{str(target)!r} is not a bayesmixed fit (a netCDF-4 file written by fit.save()): "
            "it does not start with the HDF5 signature."
        )
    import h5py

    try:  # h5py first: h5netcdf leaves a half-made object behind on a damaged file
        with h5py.File(target, "r") as h5:
            h5.visit(lambda name: None)
    except Exception as err:
        raise FitError(
            f"Cannot read {str(target)!r}: the file is damaged or truncated "
            f"({type(err).__name__}: {err})."
        ) from err
    try:
        tree = xr.open_datatree(target, engine=_ENGINE)
    except Exception as err:
        raise FitError(
            f"{str(target)!r} is not a bayesmixed fit (a netCDF file written by fit.save()) "
            f"or it is damaged: {type(err).__name__}: {err}"
        ) from err
    try:
        return tree.load()
    except Exception as err:
        raise FitError(
            f"Cannot read {str(target)!r}: the file is damaged or truncated "
            f"({type(err).__name__}: {err})."
        ) from err
    finally:
        tree.close()


def _metadata(tree: Any, target: Path) -> dict[str, Any]:
    if _GROUP not in tree.children:
        raise FitError(
            f"{str(target)!r} is a netCDF file but not a bayesmixed fit: it has no "
            f"{_GROUP!r} group (files written by fit.save() have one)."
        )
    attrs = tree[_GROUP].attrs
    try:
        meta = json.loads(attrs["metadata"])
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise FitError(
            f"{str(target)!r} is not a readable bayesmixed fit: its model description is "
            f"missing or damaged ({type(err).__name__}: {err})."
        ) from err
    if not isinstance(meta, dict):
        raise FitError(f"{str(target)!r} is not a readable bayesmixed fit: its model "
                       "description is not a JSON object.")
    # the attributes are what tools other than bayesmixed read; they decide
    meta["format"] = attrs.get("format")
    version = attrs.get("format_version")
    meta["format_version"] = int(version) if isinstance(version, int | np.integer) else version
    return meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a saved fit (format, versions, model, settings), without loading it.

    Raises
    ------
    FitError
        The file does not exist or is not a bayesmixed fit.
    """
    target = _as_path(path)
    return _metadata(_open(target), target)


def _check_version(meta: Mapping[str, Any], target: Path) -> None:
    from bayesmixed import __version__

    written_by = meta.get("written_by", {}).get("bayesmixed", "unknown")
    version = meta.get("format_version")
    if meta.get("format") != FORMAT:
        raise FitError(f"{str(target)!r} is not a bayesmixed fit (format {meta.get('format')!r}).")
    if version in _READABLE:
        return
    if isinstance(version, int) and version > FORMAT_VERSION:
        advice = "upgrade bayesmixed (pip install -U bayesmixed) to read it"
    else:
        advice = f"load it with bayesmixed {written_by} and save it again with this version"
    raise FitError(
        f"{str(target)!r} was written by bayesmixed {written_by} in file format {version!r}; "
        f"bayesmixed {__version__} reads format(s) {', '.join(map(str, _READABLE))}: {advice}."
    )


def _check_match(fit: Fit, tree: Any, written_by: str, target: Path) -> None:
    """The rebuilt design must label the saved draws exactly as when they were drawn."""
    design = fit.design
    layout = design.layout
    problems = []
    if "posterior" not in tree.children:
        problems.append("the file has no posterior group")
    else:
        posterior = tree["posterior"]
        missing = [v for v in layout.var_names() if v not in posterior.data_vars]
        if missing:
            problems.append(f"variable(s) {', '.join(map(repr, missing))} have no draws")
        pairs = [(fac, layout.factor(fac.label)) for fac in design.factors]
        pairs += [pair for par, par_names in zip(design.parameters, layout.parameters,
                                                  strict=True)
                  for pair in zip(par.factors, par_names.factors, strict=True)]
        for fac, names in pairs:
            if names.level_dim not in posterior.coords:
                problems.append(f"factor {fac.label!r} has no draws")
                continue
            if [str(v) for v in posterior[names.level_dim].values] != list(fac.levels):
                problems.append(f"the levels of {fac.label!r} differ")
            term_dim = names.term_dim
            if (term_dim in posterior.coords
                    and [str(v) for v in posterior[term_dim].values] != list(fac.terms)):
                problems.append(f"the terms of {fac.label!r} differ")
    if problems:
        from bayesmixed import __version__

        raise FitError(
            f"The model rebuilt from {str(target)!r} by bayesmixed {__version__} does not "
            f"match the draws saved by bayesmixed {written_by}: {'; '.join(problems)}. Load "
            f"the file with bayesmixed {written_by}."
        )


class _Reader:
    def __init__(self, data: Any) -> None:
        self.data = data

    def array(self, info: Mapping[str, Any]) -> np.ndarray:
        arr = np.asarray(self.data[info["var"]].values)
        restore = info.get("restore")
        if restore == "object":
            arr = arr.astype(object)
        elif restore == "T":
            arr = arr.astype(np.dtypes.StringDType())
        elif restore is not None:
            arr = arr.astype(np.dtype(restore))
        return arr

    def series(self, info: Mapping[str, Any]) -> pd.Series:
        kind = info["kind"]
        if kind == "numpy":
            return pd.Series(self.array(info["values"]).astype(np.dtype(info["dtype"])))
        if kind == "categorical":
            categories = pd.Index(self.series(info["categories"]))
            codes = self.array(info["codes"])
            return pd.Series(
                pd.Categorical.from_codes(codes, categories=categories, ordered=info["ordered"])
            )
        mask = self.array(info["mask"]).astype(bool)
        values = self.array(info["values"])
        if kind == "text":
            obj = values.astype(object)
            obj[mask] = pd.NA if info.get("na_value") == "NA" else np.nan
            series = pd.Series(obj, dtype=object)
            return series if info["dtype"] == "object" else series.astype(info["dtype"])
        if kind == "masked":
            series = pd.Series(values).astype(info["dtype"])
            series[mask] = pd.NA
            return series
        raise FitError(f"Unknown column kind {kind!r} in the saved data.")


def _read_frame(data: Any, info: Mapping[str, Any]) -> pd.DataFrame:
    reader = _Reader(data)
    columns = {}
    for col in info["columns"]:
        columns[col["name"]] = reader.series(col).reset_index(drop=True)
    idx = info["index"]
    if idx["kind"] == "range":
        index: pd.Index = pd.RangeIndex(idx["start"], idx["stop"], idx["step"], name=idx["name"])
    else:
        index = pd.Index(reader.series(idx), name=idx["name"])
    frame = pd.DataFrame(columns, index=pd.RangeIndex(info["rows"]))
    frame.index = index
    return frame
