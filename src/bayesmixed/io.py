"""Save a fit to one file and load it back, losslessly: ``fit.save(path)``, ``bm.load(path)``.

The file is a ZIP archive (readable with the standard library and NumPy alone):

``bayesmixed.json``
    The file format and its version, the versions of bayesmixed and of the libraries that
    wrote it, the model (formula, family, link, prior overrides, ``dropna``), the priors
    used (defaults with overrides), the sampler settings and sampling time, and the layout
    of the arrays below.
``data/*.npy``
    The model's data frame (every column that can be stored; the columns the formula uses
    always), with dtypes, categories and missing values.
``tree/<group>/*.npy``
    Every variable and coordinate of every group of the ArviZ DataTree, with dims and
    attributes.

Arrays are stored with :func:`numpy.save` (no pickle), so draws, coordinates and dtypes
come back bit for bit. On loading, the design is rebuilt from the formula and the data, and
checked against the saved posterior, so ``summary()``, ``ranef()`` and predictions with a
seed give the same results as before saving.

A file written with another file-format version raises :class:`~bayesmixed.errors.FitError`
naming the bayesmixed version that wrote it.

Examples
--------
>>> import bayesmixed as bm
>>> fit = bm.Model("Reaction ~ Days + (Days | Subject)",
...                bm.datasets.sleepstudy()).fit(random_seed=1)      # doctest: +SKIP
>>> fit.save("sleep.bmfit")                                          # doctest: +SKIP
>>> again = bm.load("sleep.bmfit")                                   # doctest: +SKIP
>>> again.summary().equals(fit.summary())                            # doctest: +SKIP
True
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmixed.errors import BayesMixedError, FitError

if TYPE_CHECKING:
    from bayesmixed.results import Fit

__all__ = ["FORMAT", "FORMAT_VERSION", "load", "read_metadata", "save"]

#: Name of the file format, stored in every file.
FORMAT = "bayesmixed-fit"
#: Version of the file format; bump it when the layout changes, and teach :func:`load`
#: to read the older versions it still supports.
FORMAT_VERSION = 1
_READABLE = (1,)
_META = "bayesmixed.json"
_LIBRARIES = ("bambi", "formulae", "pymc", "numpyro", "jax", "arviz", "xarray", "pandas", "numpy")


class _Unsupported(Exception):
    """A value this format cannot store without loss."""


# -- save ------------------------------------------------------------------------------------


def save(fit: Fit, path: str | os.PathLike[str]) -> Path:
    """Write ``fit`` to ``path`` (replaced if it exists); see the module docstring.

    Parameters
    ----------
    fit : Fit
    path : str or os.PathLike
        The file to write. The extension is free; ``.bmfit`` is a good choice.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    FitError
        The path is not a path, its folder does not exist, a used data column or the
        DataTree holds values that cannot be stored losslessly (Python objects).
    """
    target = _as_path(path)
    if not target.parent.exists():
        raise FitError(f"Cannot save to {str(target)!r}: the folder {str(target.parent)!r} "
                       "does not exist.")
    from bayesmixed import __version__
    from bayesmixed.design import used_columns

    model = fit.model
    used = set(used_columns(model.spec, model.data.columns))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            writer = _Writer(zf)
            data_info = writer.frame("data", model.data, used)
            tree_info = writer.tree("tree", fit.idata)
            meta = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "written_by": {"bayesmixed": __version__, **_library_versions()},
                "written_at": datetime.datetime.now(datetime.UTC).isoformat(),
                "model": {
                    "formula": model.formula,
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
                "tree": tree_info,
            }
            zf.writestr(
                _META,
                json.dumps(meta, indent=1),
                compress_type=zipfile.ZIP_DEFLATED,
            )
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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


class _Writer:
    """Writes arrays as ``.npy`` entries and returns JSON descriptions of them."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf

    def array(self, name: str, values: Any) -> dict[str, Any]:
        arr = np.asarray(values)
        info: dict[str, Any] = {"file": f"{name}.npy"}
        if arr.dtype.kind == "O" or arr.dtype.kind == "T":
            flat = arr.reshape(-1).tolist()
            if not all(isinstance(v, str) for v in flat):
                kinds = sorted({type(v).__name__ for v in flat if not isinstance(v, str)})
                raise _Unsupported(f"Python objects of type {', '.join(kinds)}")
            info["restore"] = "object" if arr.dtype.kind == "O" else "T"
            arr = np.asarray(flat, dtype=str).reshape(arr.shape)
        with self.zf.open(info["file"], "w", force_zip64=True) as handle:
            np.lib.format.write_array(handle, np.ascontiguousarray(arr), allow_pickle=False)
        return info

    # data frames ---------------------------------------------------------------------------

    def frame(self, prefix: str, frame: pd.DataFrame, used: set[str]) -> dict[str, Any]:
        columns = []
        skipped = []
        for i, name in enumerate(frame.columns):
            if not isinstance(name, str | int | float):
                raise FitError(f"Cannot save a data column named {name!r}: names must be "
                               "strings or numbers.")
            try:
                info = self.series(f"{prefix}/{i}", frame.iloc[:, i])
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
                index_info = {"kind": "values", **self.series(f"{prefix}/index", index.to_series())}
            except _Unsupported as err:
                raise FitError(f"Cannot save the data's index: it holds {err}.") from err
        index_info["name"] = _jsonable(index.name)
        return {"columns": columns, "index": index_info, "rows": len(frame)}

    def series(self, name: str, series: pd.Series) -> dict[str, Any]:
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            return {
                "kind": "categorical",
                "ordered": bool(dtype.ordered),
                "codes": self.array(f"{name}.codes", series.cat.codes.to_numpy()),
                "categories": self.series(f"{name}.categories", dtype.categories.to_series()),
            }
        if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
            return {"kind": "numpy", "values": self.array(name, series.to_numpy())}
        mask = series.isna().to_numpy()
        if isinstance(dtype, pd.StringDtype) or pd.api.types.is_object_dtype(dtype):
            values = series.to_numpy(dtype=object).copy()
            values[mask] = ""
            return {
                "kind": "text",
                "dtype": str(dtype),
                "values": self.array(name, values),
                "mask": self.array(f"{name}.mask", mask),
            }
        numpy_dtype = getattr(dtype, "numpy_dtype", None)
        if numpy_dtype is not None and numpy_dtype.kind in "biuf":
            return {
                "kind": "masked",
                "dtype": str(dtype),
                "values": self.array(
                    name, series.to_numpy(dtype=numpy_dtype, na_value=numpy_dtype.type(0))
                ),
                "mask": self.array(f"{name}.mask", mask),
            }
        raise _Unsupported(f"values of dtype {dtype}")

    # the DataTree --------------------------------------------------------------------------

    def tree(self, prefix: str, tree: Any) -> list[dict[str, Any]]:
        nodes = []
        for i, node in enumerate(tree.subtree):
            ds = node.to_dataset(inherit=False)
            variables = []
            for j, (name, var) in enumerate(ds.variables.items()):
                try:
                    info = self.array(f"{prefix}/{i}/{j}", var.values)
                except _Unsupported as err:
                    raise FitError(
                        f"Cannot save the variable {name!r} of the DataTree group "
                        f"{node.path!r}: it holds {err}."
                    ) from err
                variables.append(
                    {
                        "name": name,
                        "coord": name in ds.coords,
                        "dims": list(var.dims),
                        "attrs": _jsonable(dict(var.attrs)),
                        **info,
                    }
                )
            nodes.append(
                {"path": node.path, "attrs": _jsonable(dict(ds.attrs)), "variables": variables}
            )
        return nodes


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


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ndarray__", "dtype"}:
            return np.asarray(value["__ndarray__"], dtype=np.dtype(value["dtype"]))
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


# -- load ------------------------------------------------------------------------------------


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a saved fit (format, versions, model, settings), without loading it.

    Raises
    ------
    FitError
        The file does not exist or is not a bayesmixed fit.
    """
    target = _as_path(path)
    if not target.is_file():
        raise FitError(f"No saved fit at {str(target)!r}: the file does not exist.")
    try:
        with zipfile.ZipFile(target) as zf:
            return json.loads(zf.read(_META))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as err:
        raise FitError(
            f"{str(target)!r} is not a bayesmixed fit (files written by fit.save()); "
            f"{type(err).__name__}: {err}"
        ) from err


def load(path: str | os.PathLike[str]) -> Fit:
    """Load a fit written by :meth:`bayesmixed.Fit.save`.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Fit
        Same draws, summary and predictions as the fit that was saved.

    Raises
    ------
    FitError
        The file is missing or not a saved fit, was written with a file-format version
        this bayesmixed cannot read (the message names the version that wrote it), or the
        model rebuilt from it does not match the saved draws.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.load("sleep.bmfit")                                  # doctest: +SKIP
    """
    target = _as_path(path)
    meta = read_metadata(target)
    _check_version(meta, target)
    written_by = meta.get("written_by", {}).get("bayesmixed", "unknown")
    with zipfile.ZipFile(target) as zf:
        data = _read_frame(zf, meta["data"])
        tree = _read_tree(zf, meta["tree"])
    try:
        fit = _rebuild(meta, data, tree)
    except BayesMixedError as err:
        if isinstance(err, FitError):
            raise
        raise FitError(
            f"Cannot rebuild the model saved in {str(target)!r} by bayesmixed {written_by}: "
            f"{type(err).__name__}: {err}"
        ) from err
    _check_match(fit, tree, written_by)
    return fit


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


def _rebuild(meta: Mapping[str, Any], data: pd.DataFrame, tree: Any) -> Fit:
    from bayesmixed.model import Model
    from bayesmixed.priors import Prior, PriorSet
    from bayesmixed.results import Fit
    from bayesmixed.sampling import SamplerSettings

    spec = meta["model"]
    overrides: dict[str, Any] = {}
    for key, value in spec["priors"].items():
        overrides[key] = value["eta"] if "eta" in value else Prior.from_dict(value["prior"])
    model = Model(
        spec["formula"],
        data,
        family=spec["family"],
        link=spec["link"],
        priors=overrides,
        dropna=spec["dropna"],
    )
    with warnings.catch_warnings():  # the user saw them when fitting
        warnings.simplefilter("ignore")
        model.design  # noqa: B018 (builds and caches the design)
    pri = meta["priors"]
    # the priors the draws came from, whatever this version's defaults are
    model.__dict__["priors"] = PriorSet(
        common={k: Prior.from_dict(v) for k, v in pri["common"].items()},
        sd={k: Prior.from_dict(v) for k, v in pri["sd"].items()},
        eta={k: float(v) for k, v in pri["eta"].items()},
        family={k: Prior.from_dict(v) for k, v in pri["family"].items()},
    )
    known = {f.name for f in dataclasses.fields(SamplerSettings)}
    settings = SamplerSettings(**{k: v for k, v in meta["settings"].items() if k in known})
    return Fit(model, tree, settings=settings, sampling_time=meta["sampling_time"])


def _check_match(fit: Fit, tree: Any, written_by: str) -> None:
    """The rebuilt design must label the saved draws exactly as when they were drawn."""
    design = fit.design
    posterior = tree["posterior"]
    problems = []
    for term in design.common.term_slices:
        if term not in posterior.data_vars:
            problems.append(f"common term {term!r} has no draws")
    for fac in design.factors:
        if fac.label not in posterior.coords:
            problems.append(f"factor {fac.label!r} has no draws")
            continue
        if [str(v) for v in posterior[fac.label].values] != list(fac.levels):
            problems.append(f"the levels of {fac.label!r} differ")
        term_dim = f"{fac.label}__term"
        if term_dim in posterior.coords and list(posterior[term_dim].values) != fac.terms:
            problems.append(f"the terms of {fac.label!r} differ")
    if problems:
        from bayesmixed import __version__

        raise FitError(
            f"The model rebuilt by bayesmixed {__version__} does not match the draws saved by "
            f"bayesmixed {written_by}: {'; '.join(problems)}. Load the file with bayesmixed "
            f"{written_by}."
        )


class _Reader:
    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf

    def array(self, info: Mapping[str, Any]) -> np.ndarray:
        with self.zf.open(info["file"]) as handle:
            arr = np.lib.format.read_array(handle, allow_pickle=False)
        restore = info.get("restore")
        if restore == "object":
            arr = arr.astype(object)
        elif restore == "T":
            arr = arr.astype(np.dtypes.StringDType())
        return arr

    def series(self, info: Mapping[str, Any]) -> pd.Series:
        kind = info["kind"]
        if kind == "numpy":
            return pd.Series(self.array(info["values"]))
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
            obj[mask] = np.nan
            series = pd.Series(obj, dtype=object)
            return series if info["dtype"] == "object" else series.astype(info["dtype"])
        if kind == "masked":
            series = pd.Series(values).astype(info["dtype"])
            series[mask] = pd.NA
            return series
        raise FitError(f"Unknown column kind {kind!r} in the saved data.")


def _read_frame(zf: zipfile.ZipFile, info: Mapping[str, Any]) -> pd.DataFrame:
    reader = _Reader(zf)
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


def _read_tree(zf: zipfile.ZipFile, nodes: list[Mapping[str, Any]]) -> Any:
    import xarray as xr

    reader = _Reader(zf)
    datasets = {}
    for node in nodes:
        coords, data_vars = {}, {}
        for var in node["variables"]:
            variable = xr.Variable(var["dims"], reader.array(var), attrs=_from_json(var["attrs"]))
            (coords if var["coord"] else data_vars)[var["name"]] = variable
        datasets[node["path"]] = xr.Dataset(
            data_vars, coords=coords, attrs=_from_json(node["attrs"])
        )
    return xr.DataTree.from_dict(datasets)
