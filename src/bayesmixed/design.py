"""Formula spec + data -> design: response, common matrix, and per-factor group designs.

Group effects are never expanded into a dense ``Z`` matrix. Each grouping factor keeps

* ``index``: the level of every row (``n`` integers), and
* ``X``: the block's design columns (``n x K``),

so the group contribution to the linear predictor is ``sum_k X[:, k] * r[index, k]``, a
gather. Memory grows with rows x block size, not rows x levels.

The design also evaluates new data (:meth:`Design.evaluate`): the common columns through
formulae's ``evaluate_new_data``, the ``offset(...)`` terms, each factor's level of every
row (matched by value: ``308 == 308.0``; interactions by value tuples), the block columns,
the trials of binomial-like models and the rows' labels. Predictions ask it for all that.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmixed import _bambi, validate
from bayesmixed import categories as _categories
from bayesmixed.errors import DataError, FamilyError, FormulaError, PredictionError
from bayesmixed.formula import CbindResponse, FormulaSpec, GroupBlock
from bayesmixed.response import TRIALS_FAMILIES, evaluate_count, trials, trials_expressions

if TYPE_CHECKING:
    from bayesmixed.layout import Layout

__all__ = [
    "Design",
    "FactorDesign",
    "FactorRows",
    "ParameterDesign",
    "Rows",
    "build_design",
    "factor_levels",
    "used_columns",
]

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
        Level labels, in the order of ``r_<label>``'s first axis (unique; for display and
        coordinates).
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
    keys : list of tuple
        The value of every variable for each level (numbers as floats, so ``308`` and
        ``308.0`` are one level; ``("x:y", "z")`` and ``("x", "y:z")`` are two).
    """

    label: str
    variables: tuple[str, ...]
    levels: list[str]
    index: np.ndarray
    X: np.ndarray
    terms: list[str]
    subblocks: list[tuple[list[int], bool]]
    exprs: list[tuple[str, Any, list[int]]] = field(repr=False)
    keys: list[tuple] = field(default_factory=list, repr=False)

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

    def locate(self, data: pd.DataFrame) -> tuple[np.ndarray, list[tuple]]:
        """Level of every row of ``data`` by value (``-1`` for levels not in the fit).

        Values match when equal as values (``308``, ``308.0`` and ``np.int64(308)`` are one
        level); a value that matches no level exactly but prints as exactly one level's
        value does (the number ``308`` finds the text level ``"308"``). Text is never read
        as a number: ``"01"`` is not ``1``.

        Returns
        -------
        index : numpy.ndarray
            Position in ``levels`` of each row, ``-1`` where the level is unseen.
        keys : list of tuple
            Each row's value tuple (the key of its level).
        """
        lookup = {key: i for i, key in enumerate(self.keys)}
        arrays = [_value_keys(data[v]) for v in self.variables]
        keys = list(zip(*(a.tolist() for a in arrays), strict=True))
        index = np.fromiter((lookup.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        if np.any(index < 0):
            texts: dict[tuple, int] = {}
            for i, key in enumerate(self.keys):
                text = _canonical(key)
                texts[text] = -2 if text in texts else i  # -2: prints like two levels
            for row in np.flatnonzero(index < 0):
                found = texts.get(_canonical(keys[row]), -1)
                index[row] = max(found, -1)
        return index, keys


def _canonical(key: tuple) -> tuple:
    """A level's values as text, whole numbers without a decimal point (``308.0 -> "308"``)."""
    out = []
    for value in key:
        if isinstance(value, bool | np.bool_):
            out.append(str(value))
        elif isinstance(value, int | np.integer):
            out.append(str(int(value)))
        elif isinstance(value, float | np.floating):
            value = float(value)
            out.append(str(int(value)) if value.is_integer() else repr(value))
        else:
            out.append(str(value))
    return tuple(out)


@dataclass(frozen=True)
class FactorRows:
    """One grouping factor evaluated on the rows to predict.

    Attributes
    ----------
    factor : FactorDesign
    index : numpy.ndarray
        Level of each row, ``-1`` for a level the fit has not seen.
    X : numpy.ndarray
        The factor's block columns on these rows.
    new_codes : numpy.ndarray
        ``-1`` for seen levels; otherwise which distinct unseen level the row has.
    new_levels : list of str
        Labels of the distinct unseen levels, in order of first appearance.
    """

    factor: FactorDesign
    index: np.ndarray
    X: np.ndarray
    new_codes: np.ndarray
    new_levels: list[str]


@dataclass(frozen=True)
class Rows:
    """Rows evaluated for a prediction: everything the linear predictor needs.

    Attributes
    ----------
    X : numpy.ndarray
        Common columns (``m x p``), the offset excluded.
    offset : numpy.ndarray
        The ``offset(...)`` terms of every row (zeros without an offset).
    groups : list of FactorRows
        Group designs (empty when group effects are left out).
    trials : numpy.ndarray or None
        Trials of binomial-like models when asked for.
    labels : pandas.Index
        The rows' labels (the data's own index, kept as is).
    parameters : dict of str to Rows
        The same for each family parameter with its own formula (a distributional model).
    """

    X: np.ndarray
    offset: np.ndarray
    groups: list[FactorRows]
    trials: np.ndarray | None
    labels: pd.Index
    parameters: dict[str, Rows] = field(default_factory=dict)

    @property
    def unseen(self) -> dict[str, list[str]]:
        """Labels of unseen levels of each factor that has some."""
        return {g.factor.label: g.new_levels for g in self.groups if g.new_levels}


@dataclass
class ParameterDesign:
    """Design of one family parameter's formula (``sigma ~ Days + (1 | Subject)``).

    Column, term and group-term labels carry brms's prefix (``sigma_Intercept``,
    ``sigma_Days``), so they never clash with the main formula's.

    Attributes
    ----------
    name : str
        The family parameter (``"sigma"``).
    link_name : str
        Its link (``"log"``): the formula models ``link(sigma)``.
    X : numpy.ndarray
        Common design matrix (offsets excluded).
    columns : list of str
        Labels of ``X``'s columns, prefixed (``"sigma_Days"``).
    term_slices : dict of str to slice
        Columns of each common term, keyed by the prefixed term (also the prior key).
    common_design : formulae.matrices.CommonEffectsMatrix or None
        Evaluates new data.
    offset : numpy.ndarray
        Its ``offset(...)`` terms per row.
    factors : list of FactorDesign
        Its group terms, one per grouping factor, terms prefixed
        (``sd(sigma_Intercept|Subject)``).
    formula : str
        The parameter's formula as written.
    """

    name: str
    link_name: str
    X: np.ndarray
    columns: list[str]
    term_slices: dict[str, slice]
    common_design: Any = field(repr=False)
    offset: np.ndarray = field(repr=False)
    factors: list[FactorDesign]
    formula: str

    @property
    def prefix(self) -> str:
        """brms's prefix of the parameter's terms (``"sigma_"``)."""
        return f"{self.name}_"


@dataclass
class Design:
    """Everything the model builder and the predictions need, computed once.

    Attributes
    ----------
    spec : FormulaSpec
    data : pandas.DataFrame
        The rows used (missing values dropped), a copy with a ``0 .. n-1`` index.
    common : bambi adapter result
        Response, common matrix, family, default priors, offset.
    factors : list of FactorDesign
    response_name : str
        Label of the response (as written on the left of ``~``).
    row_labels : pandas.Index
        The user's index labels of the rows used (gaps where rows were dropped kept).
    parameters : list of ParameterDesign
        Family parameters with their own formula (a distributional model); empty otherwise.
    categories : Categories or None
        The categories of an ordinal or categorical response (:mod:`bayesmixed.categories`);
        for ``categorical`` the common and group columns are repeated per linear predictor.
    """

    spec: FormulaSpec
    data: pd.DataFrame
    common: _bambi.BambiCommon
    factors: list[FactorDesign]
    response_name: str
    row_labels: pd.Index | None = None
    parameters: list[ParameterDesign] = field(default_factory=list)
    categories: _categories.Categories | None = None

    def __post_init__(self) -> None:
        if self.row_labels is None:
            self.row_labels = pd.RangeIndex(len(self.data))

    @property
    def n(self) -> int:
        """Number of rows used."""
        return len(self.data)

    @property
    def family_name(self) -> str:
        """Bambi family name."""
        return self.common.family.name

    @property
    def offset(self) -> np.ndarray:
        """Sum of the ``offset(...)`` terms of every row used (zeros without one)."""
        offset = getattr(self.common, "offset", None)
        return np.zeros(self.n) if offset is None else offset

    @property
    def has_offset(self) -> bool:
        """Whether ``offset(...)`` terms add anything (non-zero) to the linear predictor."""
        return bool(np.any(self.offset != 0))

    @property
    def needs_trials(self) -> bool:
        """Whether the family's likelihood needs the number of trials (binomial-like)."""
        return self.family_name in TRIALS_FAMILIES

    @property
    def distributional(self) -> bool:
        """Whether a family parameter has its own formula (``sigma ~ Days``)."""
        return bool(self.parameters)

    def parameter(self, name: str) -> ParameterDesign:
        """The design of the family parameter ``name``'s formula."""
        for par in self.parameters:
            if par.name == name:
                return par
        raise KeyError(name)

    @property
    def n_predictors(self) -> int:
        """Number of linear predictors: ``K - 1`` for ``categorical``, else 1."""
        cats = self.categories
        return len(cats.predictors) if cats is not None and cats.predictors else 1

    def predictor_map(self, n_columns: int) -> np.ndarray:
        """``(n_columns, n_predictors)`` 0/1 matrix: the linear predictor of each column
        (columns repeated per predictor, predictor after predictor)."""
        P = self.n_predictors
        return _categories.predictor_map(n_columns // P, P)

    def factor(self, label: str) -> FactorDesign:
        """The factor design with this label."""
        for fac in self.factors:
            if fac.label == label:
                return fac
        raise KeyError(label)

    @cached_property
    def layout(self) -> Layout:
        """Names of every posterior variable, dimension and coordinate (built once)."""
        from bayesmixed.layout import Layout

        return Layout.from_design(self)

    def required_columns(self, *, include_groups: bool = True, trials: bool = False) -> list[str]:
        """Columns new data need: predictors, grouping variables, trials (in that order)."""
        spec = self.spec
        texts = list(spec.common_texts)
        if include_groups:
            texts.extend(block.expr for block in spec.all_blocks)
        names: dict[str, None] = {}
        for text in texts:
            names.update(dict.fromkeys(sorted(_formula_names(text))))
        if include_groups:
            for fac in self._all_factors():
                names.update(dict.fromkeys(fac.variables))
        if trials:
            for expr in trials_expressions(spec.response, error=PredictionError):
                names.update(dict.fromkeys(_expression_names(expr, self.data.columns)))
        return list(names)

    def evaluate(
        self,
        data: pd.DataFrame | None = None,
        *,
        include_groups: bool = True,
        trials: bool = False,
    ) -> Rows:
        """Evaluate the design on new data (or give the fitted rows when ``data`` is None).

        Parameters
        ----------
        data : pandas.DataFrame, optional
            New rows with the columns the formula uses (see :meth:`required_columns`);
            never modified. ``None``: the rows the model was fitted on.
        include_groups : bool, default True
            Evaluate the group terms (``False``: grouping columns are not needed).
        trials : bool, default False
            Evaluate the number of trials (binomial-like families).

        Returns
        -------
        Rows
            Common columns, offset, each factor's level indices (``-1`` for unseen levels)
            and block columns, trials, and the rows' labels (``data.index``).

        Raises
        ------
        PredictionError
            ``data`` is not a non-empty DataFrame, a needed column is missing (named, with
            close matches), has missing values or a type formulae cannot use, a fixed
            factor has a category the fit has not seen, or the trials cannot be read.
        """
        if data is None:
            return self._observed_rows(include_groups, trials)
        return self._new_rows(data, include_groups, trials)

    def _all_factors(self) -> list[FactorDesign]:
        return [*self.factors, *(f for par in self.parameters for f in par.factors)]

    def _observed_rows(self, include_groups: bool, need_trials: bool) -> Rows:
        def observed(factors: list[FactorDesign]) -> list[FactorRows]:
            if not include_groups:
                return []
            none = np.full(self.n, -1, dtype=np.int64)
            return [FactorRows(fac, fac.index, fac.X, none, []) for fac in factors]

        counts = np.asarray(self.common.response)[:, 1] if need_trials else None
        parameters = {
            par.name: Rows(par.X, par.offset, observed(par.factors), None, self.row_labels)
            for par in self.parameters
        }
        return Rows(self.common.X, self.offset, observed(self.factors), counts,
                    self.row_labels, parameters)

    def _new_rows(self, data: Any, include_groups: bool, need_trials: bool) -> Rows:
        if not isinstance(data, pd.DataFrame):
            raise PredictionError(
                f"data must be a pandas DataFrame of new rows, got {type(data).__name__}."
            )
        if len(data) == 0:
            raise PredictionError("The new data are empty (0 rows).")
        needed = self.required_columns(include_groups=include_groups, trials=need_trials)
        missing = [c for c in needed if c not in data.columns]
        if missing:
            group_vars = {v for fac in self.factors for v in fac.variables}
            tip = ""
            if include_groups and set(missing) <= group_vars:
                tip = " Pass include_groups=False for population-level predictions."
            raise PredictionError(
                f"Column(s) {_with_hints(missing, data.columns)} needed to predict are not in "
                f"the new data; its columns: {', '.join(map(str, data.columns))}.{tip}"
            )
        frame = data.loc[:, needed]
        bad = [c for c in needed if frame[c].isna().any()]
        if bad:
            raise PredictionError(
                f"Missing values in column(s) {', '.join(map(repr, bad))} of the new data; "
                "drop or fill those rows first."
            )
        frame = frame.reset_index(drop=True)
        group_only = _group_only(self.spec, needed)
        validate.check_column_types(
            frame, group_only=group_only, error=PredictionError, mixed_groups_ok=True
        )
        common = self.common
        _check_categories(common.common_design, frame, "fixed-effect")
        for par in self.parameters:
            _check_categories(par.common_design, frame, f"{par.name} fixed-effect")
        if include_groups:
            for fac in self._all_factors():
                for _, matrix, _ in fac.exprs:
                    _check_categories(matrix, frame, f"group-level ({fac.label})")
        groups = _locate_groups(self.factors, frame) if include_groups else []
        par_groups = {
            par.name: _locate_groups(par.factors, frame) if include_groups else []
            for par in self.parameters
        }
        counts = None
        if need_trials:
            counts = trials(
                frame, self.spec.response, error=PredictionError, where="the new data"
            )

        # evaluate only after every check passed
        X, offset = _evaluate_common(common.common_design, frame, self.spec.common)
        if self.n_predictors > 1:  # categorical: the columns of every predictor
            X = np.tile(X, (1, self.n_predictors))
        parameters = {}
        for par in self.parameters:
            par_X, par_offset = _evaluate_common(par.common_design, frame, par.formula)
            parameters[par.name] = Rows(par_X, par_offset, _group_columns(par_groups[par.name],
                                                                          frame),
                                        None, data.index)
        return Rows(X, offset, _group_columns(groups, frame), counts, data.index, parameters)


def _evaluate_common(matrix: Any, frame: pd.DataFrame, what: str) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """A common part's columns and offset on new rows."""
    if matrix is None:
        return np.zeros((len(frame), 0)), np.zeros(len(frame))
    try:
        evaluated = matrix.evaluate_new_data(frame)
    except Exception as err:
        raise PredictionError(
            f"Cannot evaluate the fixed part {what!r} on the new data: "
            f"{type(err).__name__}: {err}"
        ) from err
    return _bambi.split_offset(evaluated, len(frame))


def _locate_groups(factors: list[FactorDesign], frame: pd.DataFrame) -> list[FactorRows]:
    """Each factor's level of every new row (block columns not yet evaluated)."""
    out = []
    for fac in factors:
        index, keys = fac.locate(frame)
        new_codes, new_levels = _new_level_codes(frame, fac, index, keys)
        out.append(FactorRows(fac, index, np.zeros((0, 0)), new_codes, new_levels))
    return out


def _group_columns(groups: list[FactorRows], frame: pd.DataFrame) -> list[FactorRows]:
    """The located groups with their block columns evaluated on the new rows."""
    out = []
    for rows in groups:
        try:
            block = rows.factor.design_for(frame)
        except Exception as err:
            raise PredictionError(
                f"Cannot evaluate the group terms of {rows.factor.label!r} on the new "
                f"data: {type(err).__name__}: {err}"
            ) from err
        out.append(FactorRows(rows.factor, rows.index, block, rows.new_codes,
                              rows.new_levels))
    return out


def _new_level_codes(
    frame: pd.DataFrame, fac: FactorDesign, index: np.ndarray, keys: list[tuple]
) -> tuple[np.ndarray, list[str]]:
    codes = np.full(len(index), -1, dtype=np.int64)
    seen: dict[tuple, int] = {}
    labels: list[str] = []
    originals = [frame[v].to_numpy() for v in fac.variables]
    for row in np.flatnonzero(index < 0):
        key = keys[row]
        if key not in seen:
            seen[key] = len(seen)
            labels.append(":".join(str(col[row]) for col in originals))
        codes[row] = seen[key]
    return codes, labels


def _check_categories(matrix: Any, frame: pd.DataFrame, what: str) -> None:
    """Unseen categories of categorical predictors raise, naming column and levels."""
    if matrix is None:
        return
    for term in matrix.terms.values():
        for comp in getattr(term, "components", []):
            name = getattr(comp, "name", None)
            levels = getattr(comp, "levels", None)
            if getattr(comp, "kind", None) != "categoric" or levels is None:
                continue
            if name not in frame.columns:
                continue
            known = set(levels)
            unseen = [v for v in pd.unique(frame[name]) if v not in known]
            if unseen:
                shown = ", ".join(map(repr, unseen[:5]))
                fitted = ", ".join(map(repr, list(levels)[:10]))
                raise PredictionError(
                    f"Column {name!r} has level(s) {shown} not seen in the fit (fitted levels: "
                    f"{fitted}); the {what} effects of an unseen category are unknown."
                )


# -- columns the formula uses ------------------------------------------------------------------


def _formula_names(text: str) -> set[str]:
    """Data names a formulae expression reads (literals such as the ``1`` of ``x + 1`` not)."""
    import formulae

    try:
        names = {n for n in formulae.model_description(text).var_names if n}
    except Exception as err:
        raise FormulaError(f"Cannot read {text!r}: {type(err).__name__}: {err}") from err
    return names


def used_columns(spec: FormulaSpec, columns: pd.Index) -> list[str]:
    """Data columns the formula uses, in data order; unknown names raise ``DataError``."""
    names: set[str] = set()
    texts = [*spec.common_texts, *(b.expr for b in spec.all_blocks)]
    if isinstance(spec.response, CbindResponse):
        names |= _cbind_names(spec.response.successes, columns) | _cbind_names(
            spec.response.failures, columns
        )
    else:
        texts.append(spec.response)
    for text in texts:
        names |= _formula_names(text)
    for block in spec.all_blocks:
        names |= set(block.factor)
    missing = sorted(n for n in names if n not in columns)
    if missing:
        raise DataError(
            f"Column(s) {_with_hints(missing, columns)} used in the formula are not in the "
            f"data; available columns: {', '.join(map(str, columns))}."
        )
    return [c for c in columns if c in names]


def _with_hints(missing: list[str], columns: pd.Index) -> str:
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, [str(c) for c in columns], n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        hints.append(f"{name!r}{hint}")
    return ", ".join(hints)


def _expression_names(expr: str, columns: pd.Index) -> list[str]:
    if expr in columns:
        return [expr]
    tokens = re.findall(r"[^\W\d][\w.]*", expr)
    return [t for t in dict.fromkeys(tokens) if t in columns]


def _cbind_names(expr: str, columns: pd.Index) -> set[str]:
    import builtins
    import keyword

    if expr in columns:
        return {expr}
    tokens = set(re.findall(r"[^\W\d][\w.]*", expr))
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


def _group_only(spec: FormulaSpec, columns: list[str]) -> set[str]:
    """Columns used only as grouping variables (they never reach formulae)."""
    texts = [*spec.common_texts, *(b.expr for b in spec.all_blocks)]
    if not isinstance(spec.response, CbindResponse):
        texts.append(spec.response)
    in_formulae: set[str] = set()
    for text in texts:
        in_formulae |= _formula_names(text)
    if isinstance(spec.response, CbindResponse):
        for expr in (spec.response.successes, spec.response.failures):
            in_formulae |= set(_expression_names(expr, pd.Index(columns)))
    return {c for c in spec.variables if c in columns and c not in in_formulae}


# -- levels of grouping factors, keyed by value ------------------------------------------------


def _value_keys(column: pd.Series) -> np.ndarray:
    """One hashable key per row: numbers as floats (``308 == 308.0``), others as they are."""
    values = column
    if isinstance(column.dtype, pd.CategoricalDtype):
        cats = column.cat.categories
        if pd.api.types.is_numeric_dtype(cats) and not pd.api.types.is_bool_dtype(cats):
            return np.asarray(column.astype(float), dtype=float)
        values = column.astype(object)
    elif pd.api.types.is_bool_dtype(column):
        return np.asarray(column, dtype=float)
    elif pd.api.types.is_numeric_dtype(column):
        return np.asarray(column, dtype=float)
    arr = np.asarray(values, dtype=object)
    kind = pd.api.types.infer_dtype(arr, skipna=False)
    if kind in ("integer", "floating", "mixed-integer-float", "decimal", "boolean"):
        return arr.astype(float)
    if kind == "string":
        return np.array([str(v) for v in arr], dtype=object)
    return arr


def factor_levels(
    data: pd.DataFrame, variables: tuple[str, ...]
) -> tuple[np.ndarray, list[str], list[tuple]]:
    """Levels of a grouping factor (``a:b``: every combination present), keyed by value.

    Parameters
    ----------
    data : pandas.DataFrame
        The rows used (no missing values).
    variables : tuple of str
        The factor's columns.

    Returns
    -------
    index : numpy.ndarray
        Level of every row.
    levels : list of str
        Unique display labels (values joined with ``:``; two value tuples that would print
        alike are told apart by printing the tuples).
    keys : list of tuple
        The value tuple of each level.

    Notes
    -----
    Order, per variable (an interaction sorts by the first, then the second...): a
    categorical column's category order; a numeric column's numeric order; otherwise
    natural order of the labels (``"s2"`` before ``"s10"``).
    """
    ranks, uniques, labels = [], [], []
    for name in variables:
        rank, unique, label = _variable_levels(data[name])
        ranks.append(rank)
        uniques.append(unique)
        labels.append(label)
    sizes = [len(u) for u in uniques]
    if len(variables) == 1:
        combos, inverse = np.arange(sizes[0])[:, None], ranks[0]
    elif float(np.prod(np.asarray(sizes, dtype=float))) < 2.0**62:
        code = np.zeros(len(data), dtype=np.int64)
        for rank, size in zip(ranks, sizes, strict=True):
            code = code * size + rank
        flat, inverse = np.unique(code, return_inverse=True)
        combos = np.empty((len(flat), len(sizes)), dtype=np.int64)
        for j in range(len(sizes) - 1, -1, -1):
            combos[:, j] = flat % sizes[j]
            flat = flat // sizes[j]
    else:  # pragma: no cover - more combinations than an int64 can number
        combos, inverse = np.unique(np.stack(ranks, axis=1), axis=0, return_inverse=True)
    combos = combos.tolist()
    keys = [tuple(uniques[j][c] for j, c in enumerate(combo)) for combo in combos]
    texts = [":".join(labels[j][c] for j, c in enumerate(combo)) for combo in combos]
    return np.asarray(inverse, dtype=np.int64).reshape(-1), _unique_labels(texts, keys), keys


def _variable_levels(column: pd.Series) -> tuple[np.ndarray, list, list[str]]:
    """Sorted level rank of every row, the keys and the labels of one grouping column."""
    codes, unique = pd.factorize(_value_keys(column))
    _, first = np.unique(codes, return_index=True)  # factorize numbers in order of appearance
    originals = column.to_numpy()[first]
    labels = [str(v) for v in originals]
    if isinstance(column.dtype, pd.CategoricalDtype):
        order = np.argsort(column.cat.codes.to_numpy()[first], kind="stable")
    elif pd.api.types.is_numeric_dtype(column):
        order = np.argsort(np.asarray(unique, dtype=float), kind="stable")
    else:
        order = np.asarray(
            sorted(range(len(labels)), key=lambda i: (_natural_key(labels[i]), labels[i])),
            dtype=np.int64,
        )
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    keys = [v.item() if hasattr(v, "item") else v for v in np.asarray(unique, dtype=object)]
    return rank[codes], [keys[i] for i in order], [labels[i] for i in order]


def _unique_labels(labels: list[str], values: list[tuple]) -> list[str]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    if all(c == 1 for c in counts.values()):
        return labels
    out = []
    for label, value in zip(labels, values, strict=True):
        if counts[label] > 1:
            label = "(" + ", ".join(map(repr, value)) + ")"
        out.append(label)
    seen: dict[str, int] = {}
    for i, label in enumerate(out):  # last resort: number what still prints alike
        if label in seen:
            seen[label] += 1
            out[i] = f"{label}#{seen[label]}"
        else:
            seen[label] = 1
    return out


def _natural_key(label: str) -> tuple:
    """Sort "2" before "10" and "a2" before "a10" (numbers inside labels compare as numbers)."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"([0-9]+)", label)
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
    _check_parameter_names(spec, family)
    columns = used_columns(spec, data.columns)
    validate.check_column_types(
        data.loc[:, columns], group_only=_group_only(spec, columns), error=DataError
    )
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
    row_labels = frame.index
    frame = frame.reset_index(drop=True)

    bambi_data = frame
    cats = None
    if family in _categories.CATEGORY_FAMILIES:
        cats, bambi_data = _category_response(spec, frame, family, link)
    if isinstance(spec.response, CbindResponse):
        if family not in (None, "binomial"):
            raise FamilyError(
                f"A cbind(successes, failures) response needs family='binomial', got {family!r}."
            )
        family = "binomial"
        succ = _cbind_count(frame, spec.response.successes)
        fail = _cbind_count(frame, spec.response.failures)
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
    common = _bambi.common_part(formula, bambi_data, family=family or "gaussian", link=link,
                                parameters={p.name: p.common for p in spec.parameters})
    factors = _factor_designs(spec.blocks, frame)
    if cats is not None:
        common, factors = _category_design(common, factors, cats)
    design = Design(
        spec=spec,
        data=frame,
        common=common,
        factors=factors,
        response_name=_strip_backticks(spec.response_text),
        row_labels=row_labels,
        parameters=[_parameter_design(p, common, frame) for p in spec.parameters],
        categories=cats,
    )
    _check_parameter_terms(design)
    validate.check_group_structure(design)
    return design


def _check_parameter_names(spec: FormulaSpec, family: str) -> None:
    """Each parameter formula names a parameter of the family other than its mean."""
    if not spec.parameters:
        return
    name = family or ("binomial" if isinstance(spec.response, CbindResponse) else "gaussian")
    params = _bambi.family_parameters(name)
    parent = _bambi.family_links(name)[0]
    others = [p for p in params if p != parent]
    for par in spec.parameters:
        if par.name == parent:
            raise FormulaError(
                f"The formula {par.formula!r} models {parent!r}, which the main formula "
                f"{spec.formula!r} already models; give formulas only to the other "
                f"parameters of family {name!r}: {', '.join(map(repr, others)) or 'none'}."
            )
        if par.name not in others:
            close = difflib.get_close_matches(par.name, others, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise FormulaError(
                f"The formula {par.formula!r} names {par.name!r}{hint}, which is not a "
                f"parameter of family {name!r}; its parameters besides {parent!r}: "
                f"{', '.join(map(repr, others)) or 'none'}."
            )


def _parameter_design(
    spec: Any, common: _bambi.BambiCommon, frame: pd.DataFrame
) -> ParameterDesign:
    part = common.parameters[spec.name]
    prefix = f"{spec.name}_"
    factors = _factor_designs(spec.blocks, frame, prefix=prefix)
    if part.X.shape[1] == 0 and not factors:
        raise FormulaError(
            f"The formula {spec.formula!r} has no terms; write '{spec.name} ~ 1' for a "
            f"constant {spec.name!r}, or leave the formula out."
        )
    return ParameterDesign(
        name=spec.name,
        link_name=part.link_name,
        X=part.X,
        columns=[prefix + c for c in part.columns],
        term_slices={prefix + t: sl for t, sl in part.term_slices.items()},
        common_design=part.common_design,
        offset=part.offset,
        factors=factors,
        formula=spec.formula,
    )


def _check_parameter_terms(design: Design) -> None:
    """A main term must not be called as a parameter's term (``sigma_Days``) is."""
    main = set(design.common.term_slices)
    for par in design.parameters:
        clash = sorted(main & set(par.term_slices))
        if clash:
            raise FormulaError(
                f"The main formula has the term(s) {', '.join(map(repr, clash))}, the names "
                f"brms gives to terms of {par.formula!r}; rename the column(s)."
            )
def _category_response(
    spec: FormulaSpec, frame: pd.DataFrame, family: str, link: Any
) -> tuple[_categories.Categories, pd.DataFrame]:
    """The categories of an ordinal/categorical response, and the data Bambi reads (the
    response as an ordered categorical of codes: Bambi 0.21's ordinal families fail on an
    integer response)."""
    column = _strip_backticks(spec.response_text.strip())
    levels, codes = _categories.response_categories(frame[column], column, family)
    parent, _, default = _bambi.family_links(family)
    chosen = link.get(parent, default) if isinstance(link, dict) else (link or default)
    _categories.check_link(family, chosen)
    cats = _categories.Categories(family, chosen, levels, codes)
    ordered = pd.Categorical.from_codes(codes, categories=list(range(len(levels))),
                                        ordered=True)
    return cats, frame.assign(**{column: ordered})


def _category_design(
    common: _bambi.BambiCommon, factors: list[FactorDesign], cats: _categories.Categories
) -> tuple[_bambi.BambiCommon, list[FactorDesign]]:
    """Response codes, the thresholds' prior, and (categorical) columns per predictor."""
    import dataclasses

    from bayesmixed.priors import Prior

    updates: dict[str, Any] = {
        "response": cats.codes, "logit_like": True, "intercept_sd_scale": 2.5,
        "response_std": 1.0,
    }
    if cats.ordinal:
        updates["family_priors"] = {
            _categories.THRESHOLD: Prior(**_categories.THRESHOLD_PRIOR)
        }
        return dataclasses.replace(common, **updates), factors
    preds = cats.predictors
    P, p = len(preds), common.X.shape[1]
    slices: dict[str, slice] = {}
    priors: dict[str, Prior] = {}
    for i, pred in enumerate(preds):
        for term, sl in common.term_slices.items():
            name = f"{pred}_{term}"
            slices[name] = slice(sl.start + i * p, sl.stop + i * p)
            if term in common.term_priors:
                priors[name] = common.term_priors[term]
    updates.update(
        X=np.tile(common.X, (1, P)), columns=_categories.expand_columns(common.columns, preds),
        term_slices=slices, term_priors=priors, family_priors={},
    )
    expanded = []
    for fac in factors:
        K = len(fac.terms)
        subblocks = [([c + i * K for c in cols], corr)
                     for i in range(P) for cols, corr in fac.subblocks]
        exprs = [(expr, matrix, [c + i * K for c in cols])
                 for i in range(P) for expr, matrix, cols in fac.exprs]
        expanded.append(dataclasses.replace(
            fac, X=np.tile(fac.X, (1, P)), terms=_categories.expand_columns(fac.terms, preds),
            subblocks=subblocks, exprs=exprs,
        ))
    return dataclasses.replace(common, **updates), expanded


def _strip_backticks(text: str) -> str:
    """```my y``` -> ``my y`` (a quoted column name is named without its quotes)."""
    return text[1:-1] if re.fullmatch(r"`[^`]+`", text) else text


def _cbind_count(frame: pd.DataFrame, expr: str) -> np.ndarray:
    try:
        return evaluate_count(frame, expr)
    except DataError as err:
        raise DataError(f"cbind argument {expr!r}: {err}") from err


def _factor_designs(
    blocks: tuple[GroupBlock, ...], frame: pd.DataFrame, *, prefix: str = ""
) -> list[FactorDesign]:
    """One design per grouping factor; ``prefix`` names a parameter's terms (``sigma_``)."""
    import formulae

    out: dict[str, FactorDesign] = {}
    for block in blocks:
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
        names = [prefix + name for name in names]
        if label not in out:
            index, levels, keys = factor_levels(frame, block.factor)
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
                keys=keys,
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
