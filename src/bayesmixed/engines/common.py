"""What every engine shares: options, JAX set-up, seeding, chain placement, the DataTree.

* :class:`SamplerSettings`: the validated options of :meth:`bayesmixed.Model.fit`, plus the
  engine that ran and why (``engine``, ``engine_reason``, filled in by the chooser).
* :func:`configure_jax`: float64 and JAX's persistent compilation cache.
* :func:`seed_sequence`: the ONE way a ``random_seed`` becomes randomness. Every engine
  spawns its streams from it (numpy generators with :func:`numpy_rng`, JAX keys with
  :func:`jax_keys`), so the same seed gives the same draws on every engine.
* :func:`place_chains`: the ONE chain placement (parallel on several JAX devices, or one
  chain after the other), warning with the fix when parallel chains were asked for and
  cannot run.
* :func:`to_datatree`: the ONE DataTree builder (ArviZ's ``from_dict``), used by every
  engine.

Parallel chains on the CPU need JAX to see several host devices, which can only be set
before JAX initialises: :func:`configure_host_devices` does that (``import bayesmixed``
calls it); when JAX was imported first with a single device the chains run one after the
other.
"""

from __future__ import annotations

import numbers
import os
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bayesmixed.errors import SamplingError

__all__ = [
    "CHAIN_METHODS",
    "SAMPLERS",
    "SamplerSettings",
    "cache_dir",
    "cache_enabled",
    "configure_host_devices",
    "configure_jax",
    "import_numpyro",
    "jax_keys",
    "numpy_rng",
    "one_blas_thread",
    "place_chains",
    "row_varying_parameters",
    "seed_sequence",
    "to_datatree",
]

#: values of ``Model.fit(sampler=...)`` besides "auto" (nutpie is not offered: it does not
#: install from the lock file)
SAMPLERS = ("numpyro", "blackjax", "pymc", "gibbs")

CHAIN_METHODS = ("parallel", "vectorized", "sequential")


def row_varying_parameters(design: Any) -> str | None:
    """Why an engine that takes one value of each family parameter cannot run ``design``.

    ``None`` unless a family parameter has its own formula (a distributional model such as
    ``sigma ~ Days``); only the full NUTS model lets a family parameter vary by row.
    """
    formulas = [par.formula for par in getattr(design, "parameters", [])]
    if not formulas:
        return None
    names = ", ".join(repr(f) for f in formulas)
    return (f"a distributional model ({names}): the family parameter varies by row, and this "
            "engine takes one value for all rows")


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


def _as_int(name: str, value: Any, minimum: int, kind: str) -> int:
    """``value`` as a Python int (NumPy integers included), or a SamplingError."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise SamplingError(f"{name}={value!r} must be {kind} integer.")
    value = int(value)
    if value < minimum:
        raise SamplingError(f"{name}={value!r} must be {kind} integer.")
    return value


@dataclass(frozen=True)
class SamplerSettings:
    """Validated sampler options (see :meth:`bayesmixed.Model.fit`).

    ``engine`` (``"nuts"``, ``"marginal"`` or ``"gibbs"``) and ``engine_reason`` record
    which engine ran the fit and why (set by :func:`bayesmixed.engines.choose_engine`).
    NumPy integers are accepted wherever an integer is (and stored as ``int``).
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    sampler: str = "numpyro"
    target_accept: float = 0.8
    random_seed: int | None = None
    progressbar: bool | None = None
    chain_method: str | None = None
    engine: str | None = None
    engine_reason: str | None = None

    def __post_init__(self) -> None:
        for name in ("draws", "tune", "chains"):
            minimum = 0 if name == "tune" else 1
            kind = "a non-negative" if name == "tune" else "a positive"
            object.__setattr__(self, name, _as_int(name, getattr(self, name), minimum, kind))
        if self.sampler not in SAMPLERS:
            raise SamplingError(
                f"Unknown sampler {self.sampler!r}; choose 'auto' or one of {', '.join(SAMPLERS)}."
            )
        ta = self.target_accept
        if isinstance(ta, bool) or not isinstance(ta, numbers.Real) or not 0 < ta < 1:
            raise SamplingError(
                f"target_accept={self.target_accept!r} must be a number between 0 and 1."
            )
        object.__setattr__(self, "target_accept", float(ta))
        if self.random_seed is not None:
            object.__setattr__(self, "random_seed", _as_int(
                "random_seed", self.random_seed, 0, "a non-negative integer or None; an"))
        if self.chain_method not in (None, *CHAIN_METHODS):
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


# ---------------------------------------------------------------------------------------
# JAX set-up and caches
# ---------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Directory of bayesmixed's persistent caches (compiled samplers).

    ``$BAYESMIXED_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/bayesmixed``, else
    ``~/.cache/bayesmixed`` (``%LOCALAPPDATA%\\bayesmixed`` on Windows). Like JAX's own
    compilation cache, its contents are trusted: do not share it with untrusted users.
    """
    env = os.environ.get("BAYESMIXED_CACHE_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "bayesmixed"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bayesmixed"


def memory_maps() -> tuple[int, int] | None:
    """``(mappings held, kernel limit)`` of this process, or None where unknown (not Linux).

    XLA's CPU executables each hold a few dozen memory mappings; a process reaching
    ``vm.max_map_count`` (65,530 by default) aborts inside XLA.
    """
    try:
        with open("/proc/self/maps", "rb") as fh:
            held = fh.read().count(b"\n")
        with open("/proc/sys/vm/max_map_count") as fh:
            limit = int(fh.read())
    except (OSError, ValueError):
        return None
    return held, limit


_BLAS_CONTROLLER: list[Any] = []


def one_blas_thread() -> AbstractContextManager:
    """Context in which numpy's and scipy's BLAS run on one thread.

    The warm starts (a posterior mode by scipy's L-BFGS-B, eigen-decompositions of Hessians
    of a few dozen coordinates) make thousands of BLAS calls on tiny arrays; OpenBLAS's
    threads cost more to wake than such a call, many times more on a loaded machine (the
    marginal engine's warm start of ``y ~ x + (x | g)``, 40 rows: 0.18 s a fit on two
    busy cores, 0.02 s on one thread). The controller is built once (its scan of the loaded
    libraries takes milliseconds); entering the context costs tens of microseconds.
    """
    import scipy.linalg  # noqa: F401  # scipy's own OpenBLAS is loaded before the scan
    from threadpoolctl import ThreadpoolController

    if not _BLAS_CONTROLLER:
        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")


def cache_enabled() -> bool:
    """False when ``BAYESMIXED_JAX_CACHE=0`` (no persistent caches of our own or JAX's)."""
    return os.environ.get("BAYESMIXED_JAX_CACHE", "1") != "0"


def configure_jax(x64: bool = True) -> None:
    """Enable float64 and, unless the user set one, JAX's persistent compilation cache.

    XLA executables are written to ``cache_dir() / "jax"`` and reused by later processes
    that compile the same program, which removes compilation from every fit but the
    first of a given structure. Set ``BAYESMIXED_JAX_CACHE=0`` to leave JAX's cache
    settings alone (and keep no traced programs either).
    """
    from bayesmixed._imports import import_heavy

    jax = import_heavy("jax")

    if x64:
        jax.config.update("jax_enable_x64", True)
    if not cache_enabled() or jax.config.jax_compilation_cache_dir:
        return  # disabled, or the user's own cache wins
    path = cache_dir() / "jax"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def import_numpyro() -> None:
    """Import numpyro before tracing a program whose code uses it (the priors' densities).

    Importing numpyro's inference modules (with ``jax.extend`` and JAX's pallas, which
    they load) adds entries to JAX's trace context, which is part of the key of every
    compiled program: a program first traced before the import was traced and compiled a
    second time on its next call (the glmm engine's mode search, in the second fit of every
    process: a second or more). ``numpyro`` itself may be in ``sys.modules`` unexecuted
    (ArviZ registers it with a lazy loader), so the submodule is imported.
    """
    from bayesmixed._imports import import_heavy

    import_heavy("numpyro.infer")


# ---------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------


def seed_sequence(random_seed: int | None) -> np.random.SeedSequence:
    """The seed sequence every random choice of a fit derives from (fresh if None).

    Engines call ``seed_sequence(settings.random_seed).spawn(k)`` once and turn the
    children into numpy generators (:func:`numpy_rng`) or JAX keys (:func:`jax_keys`).
    """
    return np.random.SeedSequence(random_seed)


def numpy_rng(seed: np.random.SeedSequence) -> np.random.Generator:
    """A numpy generator from one child of :func:`seed_sequence`."""
    return np.random.default_rng(seed)


def jax_keys(seed: np.random.SeedSequence, n: int) -> np.ndarray:
    """``n`` raw JAX PRNG keys (``(n, 2)`` uint32, made in numpy: no JAX dispatch)."""
    return seed.generate_state(2 * n, dtype=np.uint32).reshape(n, 2)


# ---------------------------------------------------------------------------------------
# Chain placement
# ---------------------------------------------------------------------------------------


def lbfgs_minimise(f, x0, *, tol, max_iter: int):
    """Minimise ``f`` from ``x0`` by L-BFGS (optax) until the gradient norm is below ``tol``.

    JAX code, for use inside a traced (jitted) function: at most ``max_iter`` iterations in
    a ``lax.while_loop``, at least one. The engines' warm starts and mode searches.
    """
    import jax.numpy as jnp
    import optax
    from jax import lax

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(f)

    def step(carry):
        x, state, i = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return optax.apply_updates(x, updates), state, i + 1

    def more(carry):
        _, state, i = carry
        grad = optax.tree_utils.tree_get(state, "grad")
        return (i == 0) | ((i < max_iter) & (jnp.linalg.norm(grad) > tol))

    x, _, _ = lax.while_loop(more, step, (x0, opt.init(x0), 0))
    return x


def place_chains(settings: SamplerSettings, *, vectorized_ok: bool = True) -> str:
    """How the chains run: ``"parallel"``, ``"vectorized"`` or ``"sequential"``.

    Default: parallel when JAX has a device per chain, else one after the other
    (sequential chains reuse one compiled single-chain program; vectorised NUTS took up to
    ten times longer to compile and sampled no faster on two cores, ``docs/benchmarks.md``).
    One chain is always sequential. ``chain_method="parallel"`` with too few devices warns,
    naming the fix, and runs the chains one after the other.
    """
    import jax

    chains = settings.chains
    method = settings.chain_method
    devices = jax.local_device_count()
    if method is None:
        method = "parallel" if chains > 1 and devices >= chains else "sequential"
    if method == "parallel" and devices < chains:
        from bayesmixed.validate import warn_user

        warn_user(
            f"chain_method='parallel' needs {chains} JAX devices but there are {devices}; "
            "running the chains one after the other. Import bayesmixed before JAX (or set "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N before starting Python) to "
            "run them in parallel.",
            UserWarning,
        )
        method = "sequential"
    if chains == 1:
        method = "sequential"
    if method == "vectorized" and not vectorized_ok:
        method = "sequential"
    return method


# ---------------------------------------------------------------------------------------
# The one DataTree builder
# ---------------------------------------------------------------------------------------


def to_datatree(
    posterior: dict[str, np.ndarray],
    stats: dict[str, np.ndarray],
    *,
    observed: dict[str, np.ndarray],
    coords: dict[str, Any],
    dims: dict[str, list[str]],
    attrs: dict[str, Any] | None = None,
):
    """Assemble the ArviZ DataTree as ``pm.sample`` lays it out (every engine's output).

    Parameters
    ----------
    posterior : dict of str to numpy.ndarray
        ``(chain, draw, ...)`` arrays.
    stats : dict of str to numpy.ndarray
        ``(chain, draw)`` per-draw statistics (``diverging`` at least).
    observed : dict of str to numpy.ndarray
        The response.
    coords, dims
        Coordinates and dimension names of the variables (unused coordinates dropped).
    attrs : dict, optional
        Attributes of the posterior group (sampler, times, chain method, engine).

    Notes
    -----
    The same tree as ArviZ's ``from_dict(..., sample_dims=["chain", "draw"])`` (same
    dimension names, default coordinates and attributes: ``tests/test_engines.py`` checks
    they are identical), built without its per-variable DataArrays, deep copies of every
    coordinate and alignments: a third of the time, which counts in loops of small fits.
    """
    from xarray import DataTree

    groups = {
        "posterior": _dataset(posterior, ("chain", "draw"), coords, dims, attrs),
        "sample_stats": _dataset(stats, ("chain", "draw"), coords, dims, None),
        "observed_data": _dataset(observed, (), coords, dims, None),
    }
    return DataTree.from_dict(groups)


def _dataset(values: dict[str, np.ndarray], sample_dims: tuple[str, ...],
             coords: dict[str, Any], dims: dict[str, list[str]],
             attrs: dict[str, Any] | None) -> Any:
    """One group as ArviZ's ``dict_to_dataset`` makes it (its dimension rules, its attrs)."""
    from arviz_base import generate_dims_coords, make_attrs
    from xarray import Dataset

    data_vars: dict[str, Any] = {}
    group_coords: dict[str, Any] = {}
    for name, value in values.items():
        value = np.asarray(value)
        given = list(dims.get(name, []))
        var_dims = [d for d in sample_dims if d not in given] + given
        var_dims, var_coords = generate_dims_coords(
            value.shape, var_name=name, dims=var_dims,
            coords={d: coords[d] for d in var_dims if d in coords},
        )
        data_vars[name] = (var_dims, value)
        for d in var_dims:
            group_coords.setdefault(d, var_coords[d])
    return Dataset(data_vars, coords=group_coords,
                   attrs=make_attrs(attrs=dict(attrs or {}) or None,
                                    sample_dims=list(sample_dims)))
