"""Small data sets from R's lme4 and brms packages, shipped with bayesmixed.

Each loader returns a fresh :class:`pandas.DataFrame`; grouping factors are strings
(categorical in meaning), so that ``(1 | herd)`` never treats a label as a number.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["cbpp", "inhaler", "penicillin", "sleepstudy"]


def _read(name: str, dtypes: dict[str, str]) -> pd.DataFrame:
    with resources.files(__name__).joinpath(f"{name}.csv").open("r") as fh:
        return pd.read_csv(fh, dtype=dtypes)


def sleepstudy() -> pd.DataFrame:
    """Reaction times in a sleep-deprivation study (Belenky et al. 2003).

    180 rows, 18 subjects observed on days 0 to 9 of three hours of sleep a night.

    Returns
    -------
    pandas.DataFrame
        Columns ``Reaction`` (ms, float), ``Days`` (int), ``Subject`` (str).

    Examples
    --------
    >>> import bayesmixed as bm
    >>> bm.datasets.sleepstudy().shape
    (180, 3)
    """
    return _read("sleepstudy", {"Subject": str})


def cbpp() -> pd.DataFrame:
    """Contagious bovine pleuropneumonia incidence in zebu herds (Lesnoff et al. 2004).

    56 rows: 15 herds observed in up to 4 periods.

    Returns
    -------
    pandas.DataFrame
        Columns ``herd`` (str), ``incidence`` (int, new cases), ``size`` (int, herd size),
        ``period`` (str, "1" to "4").

    Examples
    --------
    >>> import bayesmixed as bm
    >>> bm.datasets.cbpp().shape
    (56, 4)
    """
    return _read("cbpp", {"herd": str, "period": str})


def penicillin() -> pd.DataFrame:
    """Penicillin potency assay: 6 samples on 24 plates, fully crossed.

    144 rows.

    Returns
    -------
    pandas.DataFrame
        Columns ``diameter`` (int, mm of the growth-inhibition zone), ``plate`` (str),
        ``sample`` (str).

    Examples
    --------
    >>> import bayesmixed as bm
    >>> bm.datasets.penicillin().shape
    (144, 3)
    """
    return _read("penicillin", {"plate": str, "sample": str})


def inhaler() -> pd.DataFrame:
    """Ratings of two inhalers in a cross-over trial (Ezzet and Whitehead 1991; brms's
    ``inhaler``), an ordinal response.

    572 rows: 286 subjects, each giving both inhalers an ordinal rating from 1 to 4.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject`` (str), ``rating`` (int, 1 to 4), ``treat`` (float, +0.5 or
        -0.5: which inhaler), ``period`` (float, +0.5 or -0.5), ``carry`` (int, -1, 0 or
        1: carry-over of the earlier treatment).

    Examples
    --------
    >>> import bayesmixed as bm
    >>> bm.datasets.inhaler().shape
    (572, 5)
    """
    return _read("inhaler", {"subject": str})
