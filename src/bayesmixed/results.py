"""The fit: posterior draws (an ArviZ DataTree) together with the model that made them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from bayesmixed import summary as _summary

if TYPE_CHECKING:
    from bayesmixed.model import Model
    from bayesmixed.sampling import SamplerSettings

__all__ = ["Fit"]


class Fit:
    """Posterior of a :class:`~bayesmixed.Model`, returned by ``Model.fit()``.

    Attributes
    ----------
    model : Model
        The model that was fitted.
    idata : xarray.DataTree
        ArviZ DataTree with ``posterior`` (common effects by term, ``sd_<g>``,
        ``cor_<g>``, ``r_<g>`` with level coordinates, family parameters),
        ``sample_stats`` and ``observed_data``.
    settings : SamplerSettings
        The sampler options used.
    sampling_time : float
        Seconds spent in the sampler (compilation included).
    """

    def __init__(
        self,
        model: Model,
        idata: Any,
        *,
        settings: SamplerSettings,
        sampling_time: float = float("nan"),
    ) -> None:
        self.model = model
        self.idata = idata
        self.settings = settings
        self.sampling_time = sampling_time

    @property
    def design(self):
        """The model's design (response, matrices, factors)."""
        return self.model.design

    @property
    def posterior(self):
        """The posterior group as an :class:`xarray.Dataset`."""
        return self.idata["posterior"].to_dataset()

    def summary(self, quantiles: Sequence[float] = (0.025, 0.975)) -> pd.DataFrame:
        """Hyper-parameters, one row each, labelled as brms does.

        Rows: fixed effects (``Intercept``, ``Days``), group SDs (``sd(Days|Subject)``),
        correlations (``cor(Intercept,Days|Subject)``), family parameters (``sigma``).
        Columns: ``mean``, ``sd``, quantiles (``q2.5``, ``q97.5``), ``r_hat``,
        ``ess_bulk``, ``ess_tail``. Group effects are in :meth:`ranef`.
        """
        return _summary.summary_table(self.posterior, self.design, quantiles)

    def fixef(self, quantiles: Sequence[float] = (0.025, 0.975)) -> pd.DataFrame:
        """Common (fixed) effects: mean, sd and quantiles per design column."""
        return _summary.fixef_table(self.posterior, self.design, quantiles)

    def ranef(self, quantiles: Sequence[float] = (0.025, 0.975)) -> dict[str, pd.DataFrame]:
        """Group effects (deviations), ``{factor: DataFrame}`` with ``(term, stat)`` columns."""
        return _summary.ranef_table(self.posterior, self.design, quantiles)

    def coef(self, quantiles: Sequence[float] = (0.025, 0.975)) -> dict[str, pd.DataFrame]:
        """Per-level coefficients, fixed + group effect, as lme4's ``coef()``."""
        return _summary.coef_table(self.posterior, self.design, quantiles)

    def VarCorr(self) -> dict[str, dict[str, pd.DataFrame]]:  # noqa: N802 (lme4's name)
        """Group SDs and correlation matrices per factor (and the residual SD)."""
        return _summary.varcorr_table(self.posterior, self.design)

    def __repr__(self) -> str:
        design = self.design
        s = self.settings
        header = (
            f" Family: {design.family_name}\n  Links: {design.common.parent} = "
            f"{design.common.link_name}\nFormula: {self.model.formula}\n   Data: "
            f"{design.n} observations\n  Draws: {s.chains} chains, each with "
            f"{s.tune} tuning and {s.draws} kept draws ({s.sampler} NUTS)"
        )
        return _summary.format_summary(self.summary(), design, header)
