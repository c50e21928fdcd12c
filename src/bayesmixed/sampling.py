"""pm.Model -> posterior draws on JAX (numpyro by default, blackjax, or PyMC's own NUTS).

Parallel chains on the CPU need JAX to see several host devices, which can only be set
before JAX initialises: :func:`configure_host_devices` does that (``import bayesmixed``
calls it), and when JAX was imported first with a single device the chains run vectorised.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

from bayesmixed.errors import SamplingError

__all__ = ["SAMPLERS", "SamplerSettings", "configure_host_devices", "run_sampler"]

SAMPLERS = ("numpyro", "blackjax", "pymc", "nutpie")


def configure_host_devices(n: int | None = None) -> bool:
    """Let JAX use ``n`` CPU devices (default: max(4, cores)) so chains run in parallel.

    Returns False (and changes nothing) when JAX is already initialised.
    """
    if "jax" in sys.modules:
        return False
    n = n or max(4, os.cpu_count() or 1)
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    return True


@dataclass(frozen=True)
class SamplerSettings:
    """Validated sampler options (see :meth:`bayesmixed.Model.fit`)."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    sampler: str = "numpyro"
    target_accept: float = 0.8
    random_seed: int | None = None
    progressbar: bool | None = None
    chain_method: str | None = None

    def __post_init__(self) -> None:
        for name in ("draws", "tune", "chains"):
            value = getattr(self, name)
            minimum = 0 if name == "tune" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                kind = "a non-negative" if name == "tune" else "a positive"
                raise SamplingError(f"{name}={value!r} must be {kind} integer.")
        if self.sampler not in SAMPLERS:
            raise SamplingError(
                f"Unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}."
            )
        if not (isinstance(self.target_accept, float | int) and 0 < self.target_accept < 1):
            raise SamplingError(
                f"target_accept={self.target_accept!r} must be a number between 0 and 1."
            )
        seed = self.random_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise SamplingError(f"random_seed={seed!r} must be a non-negative integer or None.")
        if self.chain_method not in (None, "parallel", "vectorized", "sequential"):
            raise SamplingError(
                f"chain_method={self.chain_method!r} must be 'parallel', 'vectorized' or "
                "'sequential'."
            )

    @property
    def show_progress(self) -> bool:
        """Progress bar on unless asked otherwise or running under CI."""
        if self.progressbar is not None:
            return bool(self.progressbar)
        return not os.environ.get("CI")


def _chain_method(settings: SamplerSettings) -> str:
    if settings.chain_method:
        return settings.chain_method
    import jax

    return "parallel" if jax.local_device_count() >= settings.chains else "vectorized"


def run_sampler(model: Any, settings: SamplerSettings, var_names: list[str]) -> tuple[Any, float]:
    """Sample ``model``; return the DataTree and the wall time in seconds.

    The clock stops after every draw is on the host (no asynchronous dispatch hides work).
    """
    import pymc as pm

    kwargs: dict[str, Any] = {
        "draws": settings.draws,
        "tune": settings.tune,
        "chains": settings.chains,
        "random_seed": settings.random_seed,
        "progressbar": settings.show_progress,
        "var_names": var_names,
        "model": model,
        "target_accept": settings.target_accept,
        "compute_convergence_checks": False,
    }
    if settings.sampler in ("numpyro", "blackjax"):
        if settings.sampler == "blackjax":
            try:
                import blackjax  # noqa: F401
            except ImportError as err:
                raise SamplingError(
                    "sampler='blackjax' needs the blackjax package: pip install blackjax"
                ) from err
        kwargs["nuts_sampler"] = settings.sampler
        method = _chain_method(settings)
        kwargs["nuts"] = {"chain_method": "vectorized" if method == "sequential" else method}
    elif settings.sampler == "nutpie":
        kwargs["nuts_sampler"] = "nutpie"
    else:
        kwargs["cores"] = min(settings.chains, os.cpu_count() or 1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nuts_sampler_kwargs.*")
        idata = pm.sample(**kwargs)
    return idata, time.perf_counter() - start
