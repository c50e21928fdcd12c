"""Read a fit back from the file :meth:`bayesmixed.Fit.save` wrote (:mod:`bayesmixed.io`).

Reading rebuilds the :class:`~bayesmixed.Model` and the :class:`~bayesmixed.Fit`, so it sits
after both in the pipeline; writing (:mod:`bayesmixed.io`) needs neither, which keeps the
modules free of import cycles (``Fit.save`` calls :mod:`bayesmixed.io`).
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from typing import Any

import pandas as pd

from bayesmixed.engines.common import SamplerSettings
from bayesmixed.errors import BayesMixedError, FitError
from bayesmixed.formula import Formula
from bayesmixed.io import (
    _DATA,
    _GROUP,
    _as_path,
    _check_match,
    _check_version,
    _metadata,
    _open,
    _read_frame,
)
from bayesmixed.model import Model
from bayesmixed.priors import Prior, PriorSet
from bayesmixed.results import Fit

__all__ = ["load"]


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
        The file is missing, a directory, damaged or not a saved fit, was written with a
        file-format version this bayesmixed cannot read (the message names the version that
        wrote it), or the model rebuilt from it does not match the saved draws. The message
        names the path and the cause.

    Examples
    --------
    >>> import bayesmixed as bm
    >>> fit = bm.load("sleep.bmfit")                                  # doctest: +SKIP
    """
    target = _as_path(path)
    tree = _open(target)
    meta = _metadata(tree, target)
    _check_version(meta, target)
    written_by = meta.get("written_by", {}).get("bayesmixed", "unknown")
    try:
        data = _read_frame(tree[_DATA].to_dataset(), meta["data"])
        spec = {k: meta[k] for k in ("model", "priors", "settings", "sampling_time")}
    except (KeyError, TypeError, ValueError) as err:
        raise FitError(
            f"Cannot read {str(target)!r}: its saved data or model description is damaged "
            f"({type(err).__name__}: {err})."
        ) from err
    del tree[_GROUP]
    try:
        fit = _rebuild(spec, data, tree)
    except BayesMixedError as err:
        if isinstance(err, FitError):
            raise
        raise FitError(
            f"Cannot rebuild the model saved in {str(target)!r} by bayesmixed {written_by}: "
            f"{type(err).__name__}: {err}"
        ) from err
    _check_match(fit, tree, written_by, target)
    return fit


def _rebuild(meta: Mapping[str, Any], data: pd.DataFrame, tree: Any) -> Fit:
    spec = meta["model"]
    overrides: dict[str, Any] = {}
    for key, value in spec["priors"].items():
        overrides[key] = value["eta"] if "eta" in value else Prior.from_dict(value["prior"])
    extra = spec.get("parameter_formulas") or []  # sigma ~ ...: a distributional model
    model = Model(
        Formula(spec["formula"], *extra) if extra else spec["formula"],
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
        parameter_sd=dict(pri.get("parameter_sd", {})),
    )
    known = {f.name for f in dataclasses.fields(SamplerSettings)}
    settings = SamplerSettings(**{k: v for k, v in meta["settings"].items() if k in known})
    return Fit(model, tree, settings=settings, sampling_time=meta["sampling_time"])
