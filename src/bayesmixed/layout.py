"""The one place that names posterior variables, dimensions and coordinates.

Every engine, the summaries, predictions, plots and the file format ask a :class:`Layout`
(built once from the design, ``design.layout``) for names; no other module composes one.

Names (documented in ``docs/model.md``):

========================  ======================================  ===========================
name                      what                                    dims
========================  ======================================  ===========================
``Intercept``, ``Days``   common (fixed) effects, one per term    ``(<term>_dim,)`` if several
                                                                  columns (``period_dim``)
``sd_<g>``                group SDs of factor ``g``               ``(<g>__term,)``
``L_<g>``                 Cholesky factor of the LKJ correlation  (full NUTS only, not kept)
``cor_<g>``               correlation matrix of factor ``g``      ``(<g>__term, <g>__term2)``
``z_<g>``                 standard-normal offsets                 (full NUTS only, not kept)
``r_<g>``                 group effects (deviations)              ``(<g>, <g>__term)``
``sigma``, ``alpha``...   family parameters (Bambi's names)       scalar
``sigma_Intercept``...    common effects of a parameter formula   as common effects
``sd_<g>__sigma``...      group variables of a parameter formula  as ``sd_<g>``... (the
(``cor_``, ``r_``...)     (``sigma ~ x + (1 | g)``)               levels dim shared with
                                                                  the main formula's ``g``)
``threshold``             ordinal thresholds (``Intercept[k]``)   ``(threshold_dim,)``
response name             the observed data                       ``(__obs__,)``
========================  ======================================  ===========================

A family parameter with its own formula (``bm.Formula("y ~ x", "sigma ~ x")``) has no
scalar variable; its terms are named as brms names them: summary rows ``sigma_Intercept``,
``sigma_Days``, ``sd(sigma_Intercept|Subject)``, ``cor(sigma_Intercept,sigma_Days|Subject)``.

Clashes are resolved in one pass, in this order of precedence, so that the names users know
(``Days``, ``sigma``, ``r_Subject``) stay as they are whenever nothing clashes:

1. ArviZ's and xarray's dimension names ``chain``, ``draw``, ``sample`` and the observation
   dimension ``__obs__`` are never used for anything else;
2. the family's auxiliary parameters keep Bambi's names (``sigma``, ``nu``, ``alpha``...),
   then the common effects of parameter formulas (``sigma_Days``);
3. the group variables ``sd_<g>``, ``cor_<g>``, ``r_<g>`` (and ``z_<g>``, ``L_<g>``);
4. the response keeps its name, or becomes ``y_<name>`` when that is taken;
5. a common effect keeps its term name, or takes brms's prefix, ``b_<term>`` (a predictor
   column called ``sigma`` gives the variable ``b_sigma`` and the summary row ``b_sigma``,
   next to the residual SD ``sigma``); ``fixef()`` keeps the column names;
6. the levels of factor ``g`` are the dimension ``g``, or ``g__level`` when that is taken
   (a factor called ``sample``, or ``(1 | Days)`` next to a ``Days`` slope).

Any name still taken gets a numbered suffix (``__2``). ``/`` (the HDF5 path separator) never
appears in a name: it is written ``∕`` (division slash), so every name can be saved.

Examples
--------
>>> import bayesmixed as bm
>>> sleep = bm.datasets.sleepstudy().rename(columns={"Days": "sigma"})
>>> layout = bm.Model("Reaction ~ sigma + (1 | Subject)", sleep).design.layout
>>> layout.term("sigma").var, layout.family["sigma"]
('b_sigma', 'sigma')
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from bayesmixed.design import Design

__all__ = [
    "CHAIN",
    "DRAW",
    "OBS_DIM",
    "RESERVED_DIMS",
    "SAMPLE",
    "CommonNames",
    "FactorNames",
    "Layout",
    "ParameterNames",
    "draws_name",
]

CHAIN, DRAW, SAMPLE = "chain", "draw", "sample"
#: Dimension of the observations in ``observed_data``, ``posterior_predictive`` and
#: ``log_likelihood`` (as PyMC names it).
OBS_DIM = "__obs__"
#: Dimension names reserved by ArviZ (draws, stacked draws) and for the observations.
RESERVED_DIMS = (CHAIN, DRAW, SAMPLE, OBS_DIM)
_COEF_PREFIX = "b_"
_RESPONSE_PREFIX = "y_"


def _safe(name: str) -> str:
    """A name that HDF5/netCDF can store (no ``/``)."""
    return str(name).replace("/", "\u2215")


def draws_name(label: str) -> str:
    """A label (a term, a summary row) usable as a variable next to ``chain, draw``: the
    label itself, or ``b_<label>`` when it is a reserved dimension name."""
    label = _safe(label)
    return _COEF_PREFIX + label if label in RESERVED_DIMS else label


@dataclass(frozen=True)
class CommonNames:
    """Names of one common (fixed) term.

    Attributes
    ----------
    term : str
        The term as formulae names it (``"Days"``, ``"period"``); keys the priors.
    var : str
        Its posterior variable (``"Days"``, or ``"b_sigma"`` when ``sigma`` is taken).
    dim : str or None
        Dimension of its columns when it has several (``"period_dim"``), else None.
    columns : tuple of str
        Its design columns (``"period[2]"``...), as in ``fixef()``.
    labels : tuple of str
        Summary row label of each column (the column, or ``b_<column>`` when renamed).
    """

    term: str
    var: str
    dim: str | None
    columns: tuple[str, ...]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class FactorNames:
    """Names of one grouping factor's variables and dimensions.

    Attributes
    ----------
    label : str
        The factor label as written (``"Subject"``, ``"batch:cask"``).
    sd, cor, r, z : str
        Posterior variables ``sd_<g>``, ``cor_<g>``, ``r_<g>`` and the full model's
        standard-normal offsets ``z_<g>``.
    chol : tuple of str
        The full model's LKJ Cholesky factor of each correlated block.
    sd_pieces : tuple of str
        The full model's per-term SD variables (used when the SD priors differ).
    level_dim, term_dim, term2_dim : str
        Dimensions of the levels, the terms, and the terms again (correlation columns).
    sd_labels : tuple of str
        Summary row (and prior key) of each term's SD, ``sd(Days|Subject)``.
    """

    label: str
    sd: str
    cor: str
    r: str
    z: str
    chol: tuple[str, ...]
    sd_pieces: tuple[str, ...]
    level_dim: str
    term_dim: str
    term2_dim: str
    sd_labels: tuple[str, ...]

    def cor_label(self, a: str, b: str) -> str:
        """Summary row of the correlation of terms ``a`` and ``b``, ``cor(a,b|g)``."""
        return f"cor({a},{b}|{self.label})"


@dataclass(frozen=True)
class ParameterNames:
    """Names of one family parameter's formula (a distributional model).

    Attributes
    ----------
    name : str
        The family parameter (``"sigma"``).
    common : tuple of CommonNames
        Its common terms; ``term`` is the prefixed term (``"sigma_Days"``, the prior key),
        ``labels`` the summary rows.
    factors : tuple of FactorNames
        Its grouping factors (``sd_Subject__sigma``, ``r_Subject__sigma``...).
    eta_keys : tuple of str
        Key of each factor's LKJ shape among the priors (``"sigma|Subject"``).
    """

    name: str
    common: tuple[CommonNames, ...]
    factors: tuple[FactorNames, ...]
    eta_keys: tuple[str, ...]

    @property
    def column_labels(self) -> dict[str, str]:
        """Design column (prefixed) -> summary row label."""
        return {c: lab for n in self.common for c, lab in zip(n.columns, n.labels,
                                                               strict=True)}


def eta_key(parameter: str, label: str) -> str:
    """Key of the LKJ shape of a parameter formula's block on ``label`` (``sigma|Subject``)."""
    return f"{parameter}|{label}"


class _Namespace:
    """Names handed out so far; every claim returns a name nobody else has."""

    def __init__(self, reserved: Iterable[str]) -> None:
        self.taken: set[str] = set(reserved)

    def claim(self, *choices: str) -> str:
        choices = tuple(_safe(c) for c in choices)
        for name in choices:
            if name not in self.taken:
                self.taken.add(name)
                return name
        base, i = choices[-1], 2
        while f"{base}__{i}" in self.taken:
            i += 1
        self.taken.add(f"{base}__{i}")
        return f"{base}__{i}"


@dataclass(frozen=True)
class Layout:
    """Every posterior name of one model, clashes resolved (see the module docstring).

    Build it with :meth:`from_design`; ``design.layout`` holds the one of a design.

    Attributes
    ----------
    common : tuple of CommonNames
        One entry per common term, in the design's order.
    factors : tuple of FactorNames
        One entry per grouping factor, in the design's order.
    family : dict of str to str
        Bambi's name of each auxiliary parameter -> its posterior variable (the same).
    response : str
        Variable of the observed data (and of posterior predictive draws).
    obs_dim : str
        Dimension of the observations.
    n_obs : int
        Number of observations.
    parameters : tuple of ParameterNames
        One entry per family parameter with its own formula, in the design's order.
    """

    common: tuple[CommonNames, ...]
    factors: tuple[FactorNames, ...]
    family: dict[str, str]
    response: str
    obs_dim: str
    n_obs: int
    _levels: dict[str, list[str]] = field(repr=False)
    _terms: dict[str, list[str]] = field(repr=False)
    parameters: tuple[ParameterNames, ...] = ()
    _par_terms: dict[str, list[str]] = field(default_factory=dict, repr=False)
    #: family parameters with one value per category boundary (ordinal thresholds):
    #: parameter -> (dimension, summary rows ``Intercept[1]``...)
    family_vectors: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)

    @classmethod
    def from_design(cls, design: Design) -> Layout:
        """Name everything for ``design``, resolving reserved names and clashes."""
        space = _Namespace(RESERVED_DIMS)
        common = design.common
        family = {name: space.claim(name) for name in common.family_priors}
        pars = getattr(design, "parameters", [])
        par_common = [
            [(term, space.claim(term, _COEF_PREFIX + term), sl)
             for term, sl in par.term_slices.items()]
            for par in pars
        ]
        factors: list[dict[str, Any]] = []
        for fac in design.factors:
            g = fac.label
            n_chol = len(fac.correlated_blocks)
            factors.append(
                {
                    "label": g,
                    "sd": space.claim(f"sd_{g}"),
                    "cor": space.claim(f"cor_{g}"),
                    "r": space.claim(f"r_{g}"),
                    "z": space.claim(f"z_{g}"),
                    "chol": tuple(
                        space.claim(f"L_{g}" + (f"_{i + 1}" if n_chol > 1 else ""))
                        for i in range(n_chol)
                    ),
                    "sd_pieces": tuple(space.claim(f"sd({t}|{g})") for t in fac.terms),
                }
            )
        vectors: dict[str, tuple[str, tuple[str, ...]]] = {}
        cats = getattr(design, "categories", None)
        if cats is not None and cats.ordinal:
            from bayesmixed.categories import THRESHOLD, threshold_labels

            var = family[THRESHOLD]
            vectors[THRESHOLD] = (space.claim(f"{var}_dim"),
                                  tuple(threshold_labels(cats.n_categories)))
        response = space.claim(design.response_name, _RESPONSE_PREFIX + design.response_name)
        terms: list[CommonNames] = []
        for term, sl in common.term_slices.items():
            var = space.claim(term, _COEF_PREFIX + term)
            columns = tuple(common.columns[sl])
            prefix = "" if var == _safe(term) else _COEF_PREFIX
            labels = tuple(_safe(prefix + c) for c in columns)
            dim = space.claim(f"{term}_dim") if len(columns) > 1 else None
            terms.append(CommonNames(term, var, dim, columns, labels))
        # summary labels must differ from the family rows and each other
        row_space = _Namespace([*family.values(), *RESERVED_DIMS])
        for i, names in enumerate(terms):
            labels = tuple(
                row_space.claim(lab, _COEF_PREFIX + lab) for lab in names.labels
            )
            terms[i] = CommonNames(names.term, names.var, names.dim, names.columns, labels)
        named: list[FactorNames] = []
        for fac, entry in zip(design.factors, factors, strict=True):
            g = fac.label
            named.append(
                FactorNames(
                    **entry,
                    level_dim=space.claim(g, f"{g}__level"),
                    term_dim=space.claim(f"{g}__term"),
                    term2_dim=space.claim(f"{g}__term2"),
                    sd_labels=tuple(f"sd({t}|{g})" for t in fac.terms),
                )
            )
        level_dims = {f.label: f.level_dim for f in named}
        parameters: list[ParameterNames] = []
        par_terms: dict[str, list[str]] = {}
        extra_levels: dict[str, list[str]] = {}
        for par, claimed in zip(pars, par_common, strict=True):
            p_terms = []
            for term, var, sl in claimed:
                columns = tuple(par.columns[sl])
                prefix = "" if var == _safe(term) else _COEF_PREFIX
                labels = tuple(row_space.claim(_safe(prefix + c), _COEF_PREFIX + c)
                               for c in columns)
                dim = space.claim(f"{term}_dim") if len(columns) > 1 else None
                p_terms.append(CommonNames(term, var, dim, columns, labels))
            p_factors = []
            for fac in par.factors:
                g, suffix = fac.label, f"__{par.name}"
                n_chol = len(fac.correlated_blocks)
                if g not in level_dims:
                    level_dims[g] = space.claim(g, f"{g}__level")
                    extra_levels[g] = list(fac.levels)
                names = FactorNames(
                    label=g,
                    sd=space.claim(f"sd_{g}{suffix}"),
                    cor=space.claim(f"cor_{g}{suffix}"),
                    r=space.claim(f"r_{g}{suffix}"),
                    z=space.claim(f"z_{g}{suffix}"),
                    chol=tuple(
                        space.claim(f"L_{g}{suffix}" + (f"_{i + 1}" if n_chol > 1 else ""))
                        for i in range(n_chol)
                    ),
                    sd_pieces=tuple(space.claim(f"sd({t}|{g})") for t in fac.terms),
                    level_dim=level_dims[g],
                    term_dim=space.claim(f"{g}{suffix}__term"),
                    term2_dim=space.claim(f"{g}{suffix}__term2"),
                    sd_labels=tuple(f"sd({t}|{g})" for t in fac.terms),
                )
                p_factors.append(names)
                par_terms[names.term_dim] = list(fac.terms)
            parameters.append(ParameterNames(
                name=par.name, common=tuple(p_terms), factors=tuple(p_factors),
                eta_keys=tuple(eta_key(par.name, f.label) for f in par.factors),
            ))
        return cls(
            common=tuple(terms),
            factors=tuple(named),
            family=family,
            response=response,
            obs_dim=OBS_DIM,
            n_obs=design.n,
            _levels={**extra_levels, **{f.label: list(f.levels) for f in design.factors}},
            _terms={f.label: list(f.terms) for f in design.factors},
            parameters=tuple(parameters),
            _par_terms=par_terms,
            family_vectors=vectors,
        )

    # -- lookups -----------------------------------------------------------------------------

    def term(self, term: str) -> CommonNames:
        """Names of the common term ``term`` (as formulae names it)."""
        for names in self.common:
            if names.term == term:
                return names
        raise KeyError(term)

    def factor(self, label: str) -> FactorNames:
        """Names of the grouping factor ``label``."""
        for names in self.factors:
            if names.label == label:
                return names
        raise KeyError(label)

    def parameter(self, name: str) -> ParameterNames:
        """Names of the family parameter ``name``'s formula (``"sigma"``)."""
        for names in self.parameters:
            if names.name == name:
                return names
        raise KeyError(name)

    @property
    def column_labels(self) -> dict[str, str]:
        """Design column of every common effect -> its summary row label."""
        return {c: lab for n in self.common for c, lab in zip(n.columns, n.labels, strict=True)}

    # -- what the engines write --------------------------------------------------------------

    def var_names(self) -> list[str]:
        """Posterior variables kept by every engine (common effects, group and family)."""
        names = [n.var for n in self.common]
        for fac, count in zip(self.factors, self._correlated(), strict=True):
            names.append(fac.sd)
            if count:
                names.append(fac.cor)
            names.append(fac.r)
        names.extend(self.family.values())
        for par in self.parameters:
            names.extend(n.var for n in par.common)
            for fac in par.factors:
                names.append(fac.sd)
                if fac.chol:
                    names.append(fac.cor)
                names.append(fac.r)
        return names

    def _correlated(self) -> list[int]:
        return [len(f.chol) for f in self.factors]

    def dims(self) -> dict[str, list[str]]:
        """Dimensions (after ``chain, draw``) of every posterior variable and the response."""
        out: dict[str, list[str]] = {}
        for names in self.common:
            out[names.var] = [names.dim] if names.dim else []
        for fac in self.factors:
            out[fac.sd] = [fac.term_dim]
            if fac.chol:
                out[fac.cor] = [fac.term_dim, fac.term2_dim]
            out[fac.r] = [fac.level_dim, fac.term_dim]
        for name, var in self.family.items():
            out[var] = [self.family_vectors[name][0]] if name in self.family_vectors else []
        for par in self.parameters:
            for names in par.common:
                out[names.var] = [names.dim] if names.dim else []
            for fac in par.factors:
                out[fac.sd] = [fac.term_dim]
                if fac.chol:
                    out[fac.cor] = [fac.term_dim, fac.term2_dim]
                out[fac.r] = [fac.level_dim, fac.term_dim]
        out[self.response] = [self.obs_dim]
        return out

    def coords(self) -> dict[str, Any]:
        """Coordinates of every dimension (observations, columns, levels, terms)."""
        coords: dict[str, Any] = {self.obs_dim: np.arange(self.n_obs)}
        for names in self.common:
            if names.dim:
                coords[names.dim] = list(names.columns)
        for fac in self.factors:
            coords[fac.level_dim] = list(self._levels[fac.label])
            coords[fac.term_dim] = list(self._terms[fac.label])
            coords[fac.term2_dim] = list(self._terms[fac.label])
        for par in self.parameters:
            for names in par.common:
                if names.dim:
                    coords[names.dim] = list(names.columns)
            for fac in par.factors:
                if fac.level_dim not in coords:
                    coords[fac.level_dim] = list(self._levels[fac.label])
                coords[fac.term_dim] = list(self._par_terms[fac.term_dim])
                coords[fac.term2_dim] = list(self._par_terms[fac.term_dim])
        for dim, rows in self.family_vectors.values():
            coords[dim] = list(range(1, len(rows) + 1))
        return coords
