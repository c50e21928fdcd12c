"""The only module that imports Bambi.

Bambi (with formulae) gives us: the response and common design matrix of the common part,
families (likelihood, parent parameter, links, auxiliary parameters), and default priors.
Everything is read through a small surface so a Bambi release that moves internals breaks
here, in one place, and the adapter tests say so.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayesmixed._imports import defer_duck_array_module, import_heavy, paused_gc
from bayesmixed.errors import FamilyError, FormulaError
from bayesmixed.priors import Prior

__all__ = [
    "BambiCommon",
    "BambiParameter",
    "common_part",
    "family_links",
    "family_names",
    "family_parameters",
    "inverse_link",
    "likelihood_distribution",
    "split_offset",
]


@dataclass
class BambiParameter:
    """What Bambi tells us about the common part of one family parameter's formula.

    Attributes
    ----------
    name : str
        The family parameter (``"sigma"``).
    X : numpy.ndarray
        Its common design matrix, float (offsets excluded).
    columns : list of str
        Column labels of ``X`` as formulae names them (``"Intercept"``, ``"Days"``).
    term_slices : dict of str to slice
        Columns of each common term in ``X``.
    link_name : str
        The parameter's link (``"log"`` for positive parameters).
    common_design : formulae.matrices.CommonEffectsMatrix or None
        Kept to evaluate new data.
    offset : numpy.ndarray
        Sum of its ``offset(...)`` terms per row (zeros without one).
    """

    name: str
    X: np.ndarray
    columns: list[str]
    term_slices: dict[str, slice]
    link_name: str
    common_design: Any
    offset: np.ndarray


@dataclass
class BambiCommon:
    """What Bambi tells us about the common part of a model.

    Attributes
    ----------
    family : bambi.Family
        The family object (likelihood, links, auxiliary parameters).
    response : numpy.ndarray
        Response data as Bambi's likelihood expects them (two columns for binomial).
    X : numpy.ndarray
        Common design matrix, float.
    columns : list of str
        Column labels of ``X``.
    term_slices : dict of str to slice
        Columns of each common term in ``X``.
    term_priors : dict of str to Prior
        Bambi's (auto-scaled) prior of each common term.
    family_priors : dict of str to Prior
        Bambi's default priors of the auxiliary parameters.
    intercept_sd_scale : float
        Bambi's scale for the intercept, used for group-intercept SDs.
    common_design : formulae.matrices.CommonEffectsMatrix
        Kept to evaluate new data.
    response_std : float
        SD of the response for Gaussian-like families, else 1.
    logit_like : bool
        Bernoulli/binomial family on the logit or probit scale (Bambi scales those apart).
    offset : numpy.ndarray
        Sum of the ``offset(...)`` terms of every row (zeros without an offset); not a
        column of ``X``: it enters the linear predictor with coefficient 1.
    parameters : dict of str to BambiParameter
        Common parts of the family parameters that have their own formula (a
        distributional model); empty otherwise.
    """

    family: Any
    response: np.ndarray
    X: np.ndarray
    columns: list[str]
    term_slices: dict[str, slice]
    term_priors: dict[str, Prior]
    family_priors: dict[str, Prior]
    intercept_sd_scale: float
    common_design: Any
    response_std: float
    logit_like: bool
    offset: np.ndarray
    parameters: dict[str, BambiParameter] = field(default_factory=dict)

    @property
    def parent(self) -> str:
        """Name of the parameter the linear predictor models (``mu``, ``p``)."""
        return self.family.likelihood.parent

    @property
    def link_name(self) -> str:
        """Name of the parent parameter's link."""
        return self.family.link[self.parent].name


#: Modules that ``import bambi`` runs but a fit never uses, with the functions Bambi takes
#: from them at import: they run at their first use instead (``bambi.interpret``: Bambi's
#: effect plots, which import all of ArviZ and seaborn; ``arviz_plots``, which imports
#: Matplotlib; together about 1.5 s of every first fit on the 2-core machine;
#: ``scipy.signal`` and its ``windows``, which arviz-stats imports for its density
#: estimates, about 0.1 s; ``numpy.f2py`` and ``numpy.testing``, which SciPy's copy of
#: array-api-compat takes from NumPy's namespace at import, with ``unittest`` and
#: charset-normalizer, about 0.05 s).
DEFERRED_MODULES = {
    "bambi.interpret": (),
    "arviz_plots": ("plot_dist",),
    "scipy.signal": ("convolve", "convolve2d"),
    "scipy.signal.windows": ("gaussian",),
    "numpy.f2py": (),
    "numpy.testing": (),
}

#: Duck-array libraries Bambi imports but a fit never uses (pydata/sparse, for Bambi's own
#: predictions, brings numba: about 0.9 s), deferred and hidden from xarray's type checks
#: until their first use (``_imports.defer_duck_array_module``).
DEFERRED_DUCK_ARRAYS = ("sparse",)


def _import_bambi():
    """Bambi, imported once with the modules a fit does not use deferred (``_imports``)."""
    if "bambi" in sys.modules:
        return sys.modules["bambi"]
    with paused_gc():  # xarray, imported by the deferral, under the same pause
        for name in DEFERRED_DUCK_ARRAYS:
            defer_duck_array_module(name)
        return import_heavy("bambi", defer=DEFERRED_MODULES)


def family_names() -> list[str]:
    """Names of Bambi's built-in families."""
    _import_bambi()
    from bambi.defaults.families import BUILTIN_FAMILIES

    return sorted(BUILTIN_FAMILIES)


def common_part(
    formula: str,
    data: pd.DataFrame,
    *,
    family: str,
    link: str | dict[str, str] | None,
    parameters: Mapping[str, str] | None = None,
) -> BambiCommon:
    """Let Bambi read the common part ``response ~ common`` of the model.

    Parameters
    ----------
    formula : str
        Common part only (no group terms), in formulae syntax.
    data : pandas.DataFrame
        Data without missing values in the used columns (not modified).
    family, link
        As accepted by :class:`bambi.Model`.
    parameters : mapping of str to str, optional
        The common part of each family parameter's formula (``{"sigma": "Days"}``), read
        as Bambi reads ``bmb.Formula(formula, "sigma ~ Days")``.
    """
    bmb = _import_bambi()
    if family not in family_names():
        raise FamilyError(
            f"Unknown family {family!r}; choose one of {', '.join(family_names())}."
        )
    parameters = dict(parameters or {})
    full = (
        bmb.Formula(formula, *(f"{name} ~ {rhs}" for name, rhs in parameters.items()))
        if parameters else formula
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", module="bambi")
            model = bmb.Model(full, data, family=family, link=link, dropna=False)
    except ValueError as err:
        text = str(err)
        if "link" in text.lower():
            raise FamilyError(text) from err
        raise FormulaError(f"Cannot build the common part {formula!r}: {text}") from err
    except Exception as err:  # formulae raises its own classes for parse/eval problems
        raise FormulaError(
            f"Cannot build the common part {formula!r}: {type(err).__name__}: {err}"
        ) from err

    fam = model.family
    parent = model.parameters[fam.likelihood.parent]
    design = parent.design
    X, offset = split_offset(design.common, len(data))
    slices: dict[str, slice] = {}
    columns: list[str] = []
    for name, term in (design.common.terms.items() if design.common else []):
        if getattr(term, "kind", None) == "offset":
            continue
        labels = term.labels if hasattr(term, "labels") else [name]
        slices[name] = slice(len(columns), len(columns) + len(labels))
        columns.extend(labels)
    term_priors: dict[str, Prior] = {}
    if parent.intercept_term is not None:
        term_priors["Intercept"] = _to_prior(parent.intercept_term.prior)
    for name, term in parent.common_terms.items():
        term_priors[name] = _to_prior(term.prior)
    family_priors = {
        name: _to_prior(comp.prior)
        for name, comp in model.parameters.items()
        if name != fam.likelihood.parent and hasattr(comp, "prior")
        and name != "threshold"  # ordinal thresholds: bayesmixed.categories sets the prior
    }
    scaler = model.scaler
    _, intercept_sd = scaler.get_intercept_stats()
    logit_like = fam.name in ("bernoulli", "binomial") and fam.link[
        fam.likelihood.parent
    ].name in ("logit", "probit")
    if logit_like:
        intercept_sd = 2.5
    return BambiCommon(
        family=fam,
        response=np.asarray(model.response_term.data),
        X=X,
        columns=columns,
        term_slices=slices,
        term_priors=term_priors,
        family_priors=family_priors,
        intercept_sd_scale=float(np.squeeze(intercept_sd)),
        common_design=design.common,
        response_std=float(scaler.response_std),
        logit_like=logit_like,
        offset=offset,
        parameters={
            name: _parameter_part(name, model.parameters[name], fam, len(data))
            for name in parameters
        },
    )


def _parameter_part(name: str, component: Any, family: Any, n: int) -> BambiParameter:
    """The common part of one family parameter's formula, as Bambi built it."""
    matrix = component.design.common
    X, offset = split_offset(matrix, n)
    slices: dict[str, slice] = {}
    columns: list[str] = []
    for term_name, term in (matrix.terms.items() if matrix else []):
        if getattr(term, "kind", None) == "offset":
            continue
        labels = term.labels if hasattr(term, "labels") else [term_name]
        slices[term_name] = slice(len(columns), len(columns) + len(labels))
        columns.extend(labels)
    return BambiParameter(
        name=name,
        X=X,
        columns=columns,
        term_slices=slices,
        link_name=family.link[name].name,
        common_design=matrix,
        offset=offset,
    )


def split_offset(matrix: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Split an evaluated formulae common matrix into its columns and its offset.

    Parameters
    ----------
    matrix : formulae.matrices.CommonEffectsMatrix or None
        The common part, evaluated on the fitted or on new data.
    n : int
        Number of rows (for a model without common columns).

    Returns
    -------
    X : numpy.ndarray
        ``n x p`` columns of every term except ``offset(...)`` terms, float.
    offset : numpy.ndarray
        Sum of the ``offset(...)`` terms per row (zeros when there are none).
    """
    if matrix is None:
        return np.zeros((n, 0)), np.zeros(n)
    full = np.asarray(matrix.design_matrix, dtype=float)
    keep = np.ones(full.shape[1], dtype=bool)
    offset = np.zeros(full.shape[0])
    for name, term in matrix.terms.items():
        if getattr(term, "kind", None) == "offset":
            cols = matrix.slices[name]
            offset = offset + full[:, cols].sum(axis=1)
            keep[cols] = False
    return full[:, keep], offset



def _to_prior(bprior: Any) -> Prior:
    if isinstance(bprior, (int, float)):
        raise FamilyError("Fixed (constant) family parameters are not supported.")
    args = {}
    for key, value in bprior.args.items():
        if hasattr(value, "args"):
            raise FamilyError(f"Nested prior {bprior} is not supported for default priors.")
        args[key] = np.asarray(value).tolist() if np.ndim(value) else float(value)
    return Prior(bprior.name, **args)


def inverse_link(name: str):
    """PyTensor inverse-link function for a link name."""
    _import_bambi()
    from bambi.backend.pymc import PyMCModel

    return PyMCModel.INVLINKS[name]


def likelihood_distribution(family: Any):
    """PyMC distribution class for a Bambi family's likelihood."""
    _import_bambi()
    from bambi.backend.utils import get_distribution_from_likelihood

    return get_distribution_from_likelihood(family.likelihood)


def family_parameters(family: str) -> list[str]:
    """Names of a built-in family's parameters (``["mu", "sigma"]``), parent first."""
    _import_bambi()
    from bambi.defaults.families import BUILTIN_FAMILIES

    return list(BUILTIN_FAMILIES[family]["likelihood"]["params"])


def family_links(family: str) -> tuple[str, list[str], str]:
    """Parent parameter, its supported links and its default link for a built-in family.

    Used to check ``link=`` before Bambi builds anything.
    """
    _import_bambi()
    from bambi.defaults.families import BUILTIN_FAMILIES

    spec = BUILTIN_FAMILIES[family]
    parent = spec["likelihood"]["parent"]
    supported = spec["family"].SUPPORTED_LINKS
    links = supported if isinstance(supported, list) else supported.get(parent, [])
    return parent, list(links), spec["link"][parent]
