"""Formula spec + data -> design: response, common matrix, and per-factor group designs.

Group effects are never expanded into a dense ``Z`` matrix. Each grouping factor keeps

* ``index``: the level of every row (``n`` integers), and
* ``X``: the block's design columns (``n x K``),

so the group contribution to the linear predictor is ``sum_k X[:, k] * r[index, k]``, a
gather. Memory grows with rows x block size, not rows x levels.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayesmixed import _bambi, validate
from bayesmixed.errors import DataError, FamilyError, FormulaError
from bayesmixed.formula import CbindResponse, FormulaSpec

__all__ = ["Design", "FactorDesign", "build_design", "factor_index", "used_columns"]

_SUCC, _TRIALS = "cbind__successes", "cbind__trials"


@dataclass
class FactorDesign:
    """Group-level design of one grouping factor (all its blocks together).

    Attributes
    ----------
    label : str
        Factor label (``"Subject"``, ``"batch:cask"``).
    variables : tuple of str
        Data columns whose combination makes the levels.
    levels : list of str
        Level labels, in the order of ``r_<label>``'s first axis.
    index : numpy.ndarray
        Level of each row (ints into ``levels``).
    X : numpy.ndarray
        ``n x K`` design columns of all the factor's blocks.
    terms : list of str
        The ``K`` column labels (``"Intercept"``, ``"Days"``).
    subblocks : list of tuple(list of int, bool)
        Column positions of each block and whether it is correlated (LKJ).
    exprs : list of tuple(str, formulae matrix, list of int)
        Each block's expression, its formulae design (for new data), and its columns.
    """

    label: str
    variables: tuple[str, ...]
    levels: list[str]
    index: np.ndarray
    X: np.ndarray
    terms: list[str]
    subblocks: list[tuple[list[int], bool]]
    exprs: list[tuple[str, Any, list[int]]] = field(repr=False)

    @property
    def correlated_blocks(self) -> list[list[int]]:
        """Column positions of each correlated block with at least two columns."""
        return [cols for cols, corr in self.subblocks if corr and len(cols) > 1]

    def design_for(self, data: pd.DataFrame) -> np.ndarray:
        """The ``n x K`` block columns evaluated on new data."""
        out = np.zeros((len(data), len(self.terms)))
        for _, matrix, cols in self.exprs:
            out[:, cols] = np.asarray(matrix.evaluate_new_data(data).design_matrix, dtype=float)
        return out


@dataclass
class Design:
    """Everything the model builder and the predictions need, computed once.

    Attributes
    ----------
    spec : FormulaSpec
    data : pandas.DataFrame
        The rows used (missing values dropped), a copy.
    common : bambi adapter result
        Response, common matrix, family, default priors.
    factors : list of FactorDesign
    response_name : str
        Label of the response (as written on the left of ``~``).
    """

    spec: FormulaSpec
    data: pd.DataFrame
    common: _bambi.BambiCommon
    factors: list[FactorDesign]
    response_name: str

    @property
    def n(self) -> int:
        """Number of rows used."""
        return len(self.data)

    @property
    def family_name(self) -> str:
        """Bambi family name."""
        return self.common.family.name

    def factor(self, label: str) -> FactorDesign:
        """The factor design with this label."""
        for fac in self.factors:
            if fac.label == label:
                return fac
        raise KeyError(label)


def used_columns(spec: FormulaSpec, columns: pd.Index) -> list[str]:
    """Data columns the formula uses, in data order; unknown names raise ``DataError``."""
    import formulae

    names: set[str] = set()
    texts = [spec.common] + [b.expr for b in spec.blocks]
    if isinstance(spec.response, CbindResponse):
        names |= _names_in(spec.response.successes, columns) | _names_in(
            spec.response.failures, columns
        )
    else:
        texts.append(spec.response)
    for text in texts:
        try:
            names |= set(formulae.model_description(text).var_names)
        except Exception as err:
            raise FormulaError(f"Cannot read {text!r}: {type(err).__name__}: {err}") from err
    for block in spec.blocks:
        names |= set(block.factor)
    missing = sorted(n for n in names if n not in columns)
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, [str(c) for c in columns], n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            hints.append(f"{name!r}{hint}")
        raise DataError(
            f"Column(s) {', '.join(hints)} used in the formula are not in the data; "
            f"available columns: {', '.join(map(str, columns))}."
        )
    return [c for c in columns if c in names]


def _names_in(expr: str, columns: pd.Index) -> set[str]:
    import builtins
    import keyword
    import re

    tokens = set(re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", expr))
    found = {t for t in tokens if t in columns}
    # plain names that are not columns are reported as missing columns (with suggestions)
    unknown = {
        t
        for t in tokens - found
        if "." not in t and not keyword.iskeyword(t) and not hasattr(builtins, t)
    }
    if not found and not unknown:
        raise DataError(f"cbind argument {expr!r} names no column of the data.")
    return found | unknown


def factor_index(
    data: pd.DataFrame, variables: tuple[str, ...], levels: list[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Level labels of each row for a factor (``a:b`` joins values with ``:``).

    With ``levels`` given (new data), unseen labels get index ``-1``.
    """
    labels = _labels(data, variables)
    if levels is None:
        levels = _ordered_levels(data, variables, labels)
    lookup = {lvl: i for i, lvl in enumerate(levels)}
    index = np.fromiter((lookup.get(v, -1) for v in labels), dtype=np.int64, count=len(labels))
    return index, levels


def _labels(data: pd.DataFrame, variables: tuple[str, ...]) -> np.ndarray:
    parts = [data[v].astype(str).to_numpy() for v in variables]
    if len(parts) == 1:
        return parts[0].astype(object)
    out = parts[0].astype(object)
    for part in parts[1:]:
        out = out + ":" + part.astype(object)
    return out


def _ordered_levels(
    data: pd.DataFrame, variables: tuple[str, ...], labels: np.ndarray
) -> list[str]:
    if len(variables) == 1:
        col = data[variables[0]]
        if isinstance(col.dtype, pd.CategoricalDtype):
            present = set(labels)
            return [str(c) for c in col.cat.categories if str(c) in present]
        if pd.api.types.is_numeric_dtype(col):
            return [str(v) for v in np.unique(col.to_numpy())]
    return sorted(set(labels), key=_natural_key)


def _natural_key(label: str) -> tuple:
    """Sort "2" before "10" and "a2" before "a10" (numbers inside labels compare as numbers)."""
    import re

    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", label)
        if part
    )


def build_design(
    spec: FormulaSpec,
    data: pd.DataFrame,
    *,
    family: str | None,
    link: str | dict[str, str] | None,
    dropna: bool = True,
) -> Design:
    """Build the design for a parsed formula (the user's DataFrame is never modified).

    Parameters
    ----------
    spec : FormulaSpec
    data : pandas.DataFrame
    family : str or None
        Bambi family name; ``None`` means ``"gaussian"`` (``"binomial"`` with ``cbind``).
    link : str, dict or None
        Link for the family's parent parameter (Bambi's default when None).
    dropna : bool
        Drop rows with missing values in the used columns, with a warning (lme4's
        ``na.omit``); when False, missing values raise ``DataError``.
    """
    family = validate.check_family(family, link, spec)
    columns = used_columns(spec, data.columns)
    frame = data.loc[:, columns].copy()
    missing = frame.isna().any(axis=1).to_numpy()
    if missing.any():
        bad = [c for c in columns if frame[c].isna().any()]
        if not dropna:
            raise DataError(
                f"Missing values in column(s) {', '.join(map(repr, bad))} "
                f"({int(missing.sum())} rows); drop them or pass dropna=True."
            )
        validate.warn_user(
            f"Dropped {int(missing.sum())} of {len(frame)} rows with missing values in "
            f"{', '.join(map(repr, bad))}.",
            UserWarning,
        )
        frame = frame.loc[~missing]
    if len(frame) == 0:
        raise DataError("No rows left to fit: the data are empty after dropping missing values.")
    validate.check_values(frame, spec, family)
    frame = frame.reset_index(drop=True)

    bambi_data = frame
    if isinstance(spec.response, CbindResponse):
        if family not in (None, "binomial"):
            raise FamilyError(
                f"A cbind(successes, failures) response needs family='binomial', got {family!r}."
            )
        family = "binomial"
        succ = _evaluate(frame, spec.response.successes)
        fail = _evaluate(frame, spec.response.failures)
        if np.any(succ < 0) or np.any(fail < 0):
            raise DataError(
                f"{spec.response} has negative successes or failures "
                f"({int(np.sum((succ < 0) | (fail < 0)))} rows); both must be >= 0 (negative "
                f"failures {spec.response.failures!r} mean more successes than trials)."
            )
        bambi_data = frame.assign(**{_SUCC: succ, _TRIALS: succ + fail})
        formula = f"p({_SUCC}, {_TRIALS}) ~ {spec.common}"
    else:
        formula = spec.common_formula
    common = _bambi.common_part(formula, bambi_data, family=family or "gaussian", link=link)
    factors = _factor_designs(spec, frame)
    design = Design(
        spec=spec,
        data=frame,
        common=common,
        factors=factors,
        response_name=spec.response_text,
    )
    validate.check_group_structure(design)
    return design


def _evaluate(frame: pd.DataFrame, expr: str) -> np.ndarray:
    if expr in frame.columns:
        values = frame[expr]
    else:
        try:
            values = frame.eval(expr)
        except Exception as err:
            raise DataError(f"Cannot evaluate cbind argument {expr!r}: {err}") from err
    if not pd.api.types.is_numeric_dtype(values):
        raise DataError(f"cbind argument {expr!r} must be numeric counts.")
    arr = np.asarray(values, dtype=float)
    if np.any(arr != np.round(arr)):
        raise DataError(f"cbind argument {expr!r} must hold whole-number counts.")
    return arr.astype(np.int64)


def _factor_designs(spec: FormulaSpec, frame: pd.DataFrame) -> list[FactorDesign]:
    import formulae

    out: dict[str, FactorDesign] = {}
    for block in spec.blocks:
        label = block.factor_label
        try:
            dm = formulae.design_matrices(block.expr, frame, na_action="error")
        except Exception as err:
            raise FormulaError(
                f"Cannot build the group term {block}: {type(err).__name__}: {err}"
            ) from err
        if dm.common is None:
            raise FormulaError(f"The group term {block} has no columns.")
        matrix = dm.common
        cols = np.asarray(matrix.design_matrix, dtype=float)
        names: list[str] = []
        for term_name, term in matrix.terms.items():
            names.extend(term.labels if hasattr(term, "labels") else [term_name])
        if label not in out:
            index, levels = factor_index(frame, block.factor)
            if len(levels) < 2:
                raise DataError(
                    f"The grouping factor {label!r} has only {len(levels)} level; group "
                    "effects need at least 2 levels (drop the term or use a fixed effect)."
                )
            out[label] = FactorDesign(
                label=label,
                variables=block.factor,
                levels=levels,
                index=index,
                X=np.zeros((len(frame), 0)),
                terms=[],
                subblocks=[],
                exprs=[],
            )
        fac = out[label]
        clash = sorted(set(names) & set(fac.terms))
        if clash:
            raise FormulaError(
                f"The term(s) {', '.join(clash)} appear in more than one group block on "
                f"{label!r}; each column may vary by a factor only once."
            )
        positions = list(range(len(fac.terms), len(fac.terms) + len(names)))
        fac.X = np.hstack([fac.X, cols])
        fac.terms.extend(names)
        if block.correlated:
            fac.subblocks.append((positions, True))
        else:
            fac.subblocks.extend(([p], False) for p in positions)
        fac.exprs.append((block.expr, matrix, positions))
    return list(out.values())
