"""The full-model NUTS engine: numpyro's NUTS on the PyMC model, or blackjax / PyMC.

:func:`run_nuts` drives numpyro's NUTS kernel directly (no ``pm.sample``) on any flat log
density: the marginal model of :mod:`bayesmixed.engines.marginal`, or a PyMC model's log
density translated to JAX by PyTensor (:func:`sample_pymc_jax`). Compiled samplers are
reused within the process and, through JAX's persistent compilation cache and exported
traced programs under :func:`~bayesmixed.engines.common.cache_dir`, across processes (see
``docs/benchmarks.md``). Seeding, chain placement and the DataTree come from
:mod:`bayesmixed.engines.common`.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bayesmixed.engines.common import (
    SamplerSettings,
    cache_dir,
    cache_enabled,
    configure_jax,
    jax_keys,
    numpy_rng,
    place_chains,
    seed_sequence,
    to_datatree,
)
from bayesmixed.errors import SamplingError

__all__ = [
    "NutsDraws",
    "fit",
    "nuts_attrs",
    "run_nuts",
    "run_sampler",
    "sample_pymc_jax",
    "supports",
]


def supports(design: Any, priors: Any) -> str | None:
    """The full model runs every model the design and priors describe: always None."""
    return None


def fit(design: Any, priors: Any, settings: SamplerSettings) -> tuple[Any, float]:
    """Sample the full PyMC model (group effects included); return the DataTree and seconds."""
    from bayesmixed.build import build_pymc_model, hyper_var_names

    return run_sampler(build_pymc_model(design, priors), settings, hyper_var_names(design))


def run_sampler(model: Any, settings: SamplerSettings, var_names: list[str]) -> tuple[Any, float]:
    """Sample ``model``; return the DataTree and the wall time in seconds.

    ``sampler="numpyro"`` runs :func:`sample_pymc_jax` (numpyro's NUTS on the model's JAX
    log density, without ``pm.sample``); the other samplers go through ``pm.sample``. The
    clock stops after every draw is on the host (no asynchronous dispatch hides work).
    """
    if settings.sampler == "numpyro":
        return sample_pymc_jax(model, settings, var_names)
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
        method = place_chains(settings)
        kwargs["nuts"] = {"chain_method": "vectorized" if method == "sequential" else method}
    else:
        kwargs["cores"] = min(settings.chains, os.cpu_count() or 1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*nuts_sampler_kwargs.*")
        idata = pm.sample(**kwargs)
    return idata, time.perf_counter() - start


# ---------------------------------------------------------------------------------------
# NUTS on JAX without pm.sample: one compiled program per model structure
# ---------------------------------------------------------------------------------------

#: Compiled samplers kept in this process, keyed by model structure and sampler options.
_COMPILED: dict[Any, Any] = {}
_COMPILED_MAX = 8

#: Most iterations a compiled sampler runs and records per call, and the most values
#: (coordinates and statistics of an iteration, times iterations) such a block holds (see
#: :func:`_nuts_programs`; 512 was the fastest of 64 to 2,048 for 6 coordinates).
RECORD_BLOCK, RECORD_VALUES = 512, 8192

#: Seconds between progress-bar updates the sampler aims at: each update waits for the
#: iterations before it, so a fast fit cut into 20 blocks spent half its sampling time on
#: the waits (sleepstudy, 4 chains: 0.26 s against 0.13 s without a bar)
PROGRESS_SECONDS = 0.25


def clear_programs() -> None:
    """Forget the compiled samplers and posterior maps of this module (see ``clear_compiled``)."""
    _COMPILED.clear()
    _POSTERIOR_MAPS.clear()


@dataclass(frozen=True)
class NutsDraws:
    """Raw NUTS output in the sampler's unconstrained space.

    Attributes
    ----------
    z : numpy.ndarray
        ``(chains, draws, D)`` draws of the flat unconstrained vector.
    stats : dict of str to numpy.ndarray
        ``(chains, draws)`` per-draw statistics, named as PyMC names them (``lp``,
        ``diverging``, ``n_steps``, ``tree_depth``, ``acceptance_rate``, ``step_size``,
        ``energy``).
    compile_seconds : float
        Tracing and compiling the sampler, or loading it from the caches.
    sampling_seconds : float
        Running the compiled sampler until every draw is on the host.
    chain_method : str
        ``"parallel"``, ``"vectorized"`` or ``"sequential"``.
    """

    z: np.ndarray
    stats: dict[str, np.ndarray]
    compile_seconds: float
    sampling_seconds: float
    chain_method: str


def _nuts_programs(potential_fn_gen: Any, *, tune: int, rows: int, target_accept: float,
                   dense_mass: bool, max_tree_depth: int):
    """The two traceable functions of one chain: ``init`` and ``advance``.

    ``init(data, z0, key) -> state`` starts numpyro's NUTS kernel (warm-up adaptation
    included). ``advance(data, state, record, n) -> (state, record)`` runs ``n <= rows``
    more iterations (``n`` is traced, so one compiled program serves every call) and
    writes iteration ``i`` of the call into row ``i`` of ``record`` (``rows`` rows); the
    caller keeps the rows past warm-up (:func:`run_nuts`). The record is a short block
    (:data:`RECORD_BLOCK`, :data:`RECORD_VALUES`), not the whole run: a buffer of every
    draw, carried through numpyro's loops, slowed every iteration in proportion to its
    size (a 40-row marginal fit, 6 coordinates, 500 + 1,000 iterations: a third of its
    sampling time). ``state`` crosses the boundary as a plain list of
    arrays, so that loading the exported programs needs no numpyro classes (and no
    numpyro import); ``init`` must be traced before ``advance``.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax
    from numpyro.infer.hmc import hmc

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")
    treedef: list[Any] = []  # numpyro's HMCState structure, known once init is traced

    def init(data: Any, z0: Any, key: Any):
        state = init_kernel(
            z0,
            tune,
            adapt_step_size=True,
            adapt_mass_matrix=True,
            dense_mass=dense_mass,
            target_accept_prob=target_accept,
            max_tree_depth=max_tree_depth,
            model_args=(data,),
            rng_key=key,
        )
        leaves, tree = jax.tree.flatten(state)
        treedef[:] = [tree]
        return leaves

    def advance(data: Any, leaves: Any, record: Any, n: Any):
        def body(i: Any, carry: Any):
            state, record = carry
            state = sample_kernel(state, model_args=(data,))
            at = jnp.clip(i, 0, rows - 1)
            values = (state.z, state.potential_energy, state.energy, state.num_steps,
                      state.accept_prob, state.diverging, state.adapt_state.step_size)
            record = jax.tree.map(
                lambda rec, v: lax.dynamic_update_index_in_dim(rec, v.astype(rec.dtype), at, 0),
                record, values,
            )
            return state, record

        state = jax.tree.unflatten(treedef[0], leaves)
        state, record = lax.fori_loop(0, n, body, (state, record))
        return jax.tree.leaves(state), record

    return init, advance


_SOURCE_DIGEST: list[str] = []


def _source_digest() -> str:
    """Digest of the modules whose code ends up in the traced samplers."""
    if not _SOURCE_DIGEST:
        import hashlib

        digest = hashlib.sha256()
        here = Path(__file__).resolve().parent
        for name in ("common.py", "nuts.py", "marginal.py", "glmm.py", "../prior_table.py"):
            try:
                digest.update((here / name).read_bytes())
            except OSError:
                digest.update(name.encode())
        _SOURCE_DIGEST.append(digest.hexdigest())
    return _SOURCE_DIGEST[0]


@functools.cache
def _versions() -> tuple[str, ...]:
    """Versions of the libraries whose code ends up in the traced samplers (looked up once:
    ``importlib.metadata.version`` reads the installed packages' metadata, a millisecond
    or more per call)."""
    from importlib.metadata import version

    import jax

    return jax.__version__, version("jaxlib"), version("numpyro")


def _program_key(static_key: Any, options: tuple, method: str, chains: int, args: Any) -> str:
    """Digest naming a compiled sampler: structure, shapes, options, code and versions."""
    import hashlib

    import jax

    shapes = jax.tree.map(lambda x: (tuple(np.shape(x)), str(np.asarray(x).dtype)), args)
    parts = (
        repr(static_key), options, method, chains, str(jax.tree.structure(args)),
        repr(jax.tree.leaves(shapes)), *_versions(), _source_digest(),
        jax.local_device_count(), bool(jax.config.jax_enable_x64),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]


def _load_exported(key: str) -> Any:
    import pickle

    path = cache_dir() / "programs" / f"{key}.pkl"
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception:  # a missing, stale or unreadable entry is just a cache miss
        return None


def _save_exported(key: str, exported: Any) -> None:
    import dataclasses
    import pickle

    folder = cache_dir() / "programs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        items = tuple(dataclasses.replace(e, _get_vjp=None) for e in exported)
        tmp = folder / f"{key}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            pickle.dump(items, fh)
        os.replace(tmp, folder / f"{key}.pkl")
    except Exception:  # caching is an optimisation: never fail a fit over it
        pass


def _compiled_sampler(potential_fn_gen: Any, data: Any, z0: Any, keys: Any, *, method: str,
                      chains: int, options: tuple, static_key: Any):
    """Compiled ``init`` and ``advance`` for the chain method, from the caches if possible.

    With a ``static_key``, the traced programs are kept in this process and, exported
    (``jax.export``), under ``cache_dir() / "programs"``; a later process loads them and
    skips tracing numpyro's NUTS (about a second), while JAX's persistent cache skips the
    XLA compilation.
    """
    import jax
    import jax.numpy as jnp
    from jax import export

    tune, rows, target_accept, dense_mass, max_tree_depth, dtype = options
    record = _empty_record(z0.shape[-1], rows, None if method != "vectorized" else chains,
                           dtype)
    per_chain = method != "vectorized"
    init_args = (data, z0[0] if per_chain else z0, keys[0] if per_chain else keys)
    key = None
    if static_key is not None:
        key = _program_key(static_key, options, method, chains, init_args)
        if key in _COMPILED:
            return _COMPILED[key]
    exported = _load_exported(key) if key is not None and cache_enabled() else None
    if exported is None:
        init, advance = _nuts_programs(
            potential_fn_gen, tune=tune, rows=rows, target_accept=target_accept,
            dense_mass=dense_mass, max_tree_depth=max_tree_depth,
        )
        if not per_chain:
            init = jax.vmap(init, in_axes=(None, 0, 0))
            advance = jax.vmap(advance, in_axes=(None, 0, 0, None))
        state = jax.eval_shape(init, *init_args)  # traces init first (see _nuts_programs)
        n_spec = jax.ShapeDtypeStruct((), jnp.int64)
        try:
            exported = (
                export.export(jax.jit(init))(*init_args),
                export.export(jax.jit(advance))(data, state, record, n_spec),
            )
            if key is not None and cache_enabled():
                _save_exported(key, exported)
            init_fn, advance_fn = exported[0].call, exported[1].call
        except Exception:  # programs that cannot be exported are traced as they are
            exported, init_fn, advance_fn = None, init, advance
    else:
        init_fn, advance_fn = exported[0].call, exported[1].call
    if method == "parallel":
        init_c = jax.pmap(init_fn, in_axes=(None, 0, 0)).lower(data, z0, keys).compile()
        state = jax.eval_shape(jax.pmap(init_fn, in_axes=(None, 0, 0)), data, z0, keys)
        rec = _empty_record(z0.shape[-1], rows, chains, dtype)
        n = np.zeros(chains, dtype=np.int64)
        advance_c = jax.pmap(advance_fn, in_axes=(None, 0, 0, 0)).lower(
            data, state, rec, n).compile()
    else:
        init_c = jax.jit(init_fn).lower(*init_args).compile()
        state = jax.eval_shape(init_fn, *init_args)
        advance_c = jax.jit(advance_fn).lower(
            data, state, record, np.zeros((), dtype=np.int64)).compile()
    compiled = (init_c, advance_c)
    if key is not None:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = compiled
    return compiled


def _empty_record(dim: int, rows: int, chains: int | None = None,
                  dtype: Any = np.float64) -> tuple:
    """Zeroed buffers for a block of recorded iterations (numpy: no JAX dispatch)."""
    lead = (rows,) if chains is None else (chains, rows)
    return (
        np.zeros((*lead, dim), dtype=dtype),
        np.zeros(lead, dtype=dtype),
        np.zeros(lead, dtype=dtype),
        np.zeros(lead, dtype=np.int64),
        np.zeros(lead, dtype=dtype),
        np.zeros(lead, dtype=bool),
        np.zeros(lead, dtype=dtype),
    )


def run_nuts(
    potential_fn_gen: Any,
    data: Any,
    init: np.ndarray,
    *,
    settings: SamplerSettings,
    seed: np.random.SeedSequence,
    static_key: Any = None,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
    dtype: Any = np.float64,
) -> NutsDraws:
    """Run numpyro's NUTS kernel on a flat unconstrained vector, without ``pm.sample``.

    Parameters
    ----------
    potential_fn_gen : callable
        ``data -> potential_fn``; ``potential_fn(z)`` is the negative log density of the
        flat vector ``z``. ``data`` (a pytree of arrays) is an argument of the compiled
        program, not a constant baked into it, so models of the same structure share one
        compiled sampler.
    data : pytree of numpy.ndarray
    init : numpy.ndarray
        ``(chains, D)`` starting points.
    settings : SamplerSettings
        Draws, tuning steps, chains, target acceptance, progress bar, chain method.
    seed : numpy.random.SeedSequence
        Source of the chains' JAX keys.
    static_key : hashable, optional
        Identifies ``potential_fn_gen`` (the same key must mean the same function, given
        the shapes of ``data``). With it, the compiled sampler is reused within the process
        and its traced program across processes; without it, only JAX's persistent XLA
        cache applies.
    dense_mass : bool
        Adapt a dense mass matrix instead of a diagonal one.
    max_tree_depth : int
        NUTS's maximum tree depth.
    dtype : numpy dtype
        Floating type of the data and the chains' state. float64 (the default) keeps the
        log density accurate whatever the scale of the data; float32 is for benchmarks
        (see ``docs/benchmarks.md``).

    Returns
    -------
    NutsDraws
    """
    import time

    import jax

    configure_jax(x64=np.dtype(dtype) == np.float64)  # float32 needs a process without x64
    chains = settings.chains
    method = place_chains(settings)
    # numpy in, numpy out: eager JAX operations would each cost a (cached) compilation
    data = jax.tree.map(
        lambda x: np.asarray(x, dtype=dtype if np.asarray(x).dtype.kind == "f" else None),
        data,
    )
    z0 = np.asarray(init, dtype=dtype)
    keys = jax_keys(seed, chains)
    total = settings.tune + settings.draws
    rows = min(total, RECORD_BLOCK, max(32, RECORD_VALUES // (z0.shape[-1] + 6)))
    options = (settings.tune, rows, float(settings.target_accept), bool(dense_mass),
               int(max_tree_depth), np.dtype(dtype).name)

    start = time.perf_counter()
    init_c, advance_c = _compiled_sampler(
        potential_fn_gen, data, z0, keys, method=method, chains=chains, options=options,
        static_key=static_key,
    )
    compile_seconds = time.perf_counter() - start

    progress = None
    if settings.show_progress:
        from tqdm.auto import tqdm

        progress = tqdm(total=total * chains, desc="Sampling", unit="it")
    lead = None if method == "sequential" else chains
    axis = 0 if lead is None else 1  # the iterations' axis of a record block

    def run(state: Any, scale: int) -> tuple:
        """Every iteration in blocks of ``chunk``; the post-warm-up rows, joined."""
        kept = []
        done = 0
        # with a progress bar: a first block of 5 % of the run, then blocks sized to take
        # about PROGRESS_SECONDS each (each block waits for its result to show it)
        chunk = min(rows, max(1, -(-total // 20))) if progress is not None else rows
        while done < total:
            step = min(chunk, total - done)
            started = time.perf_counter()
            n = np.full(chains, step, dtype=np.int64) if method == "parallel" else (
                np.asarray(step, dtype=np.int64))
            state, record = advance_c(data, state, _empty_record(z0.shape[-1], rows, lead,
                                                                 dtype), n)
            first = max(settings.tune - done, 0)  # rows before it are warm-up
            if first < step:
                kept.append((record, first, step))
            done += step
            if progress is not None:
                jax.block_until_ready(record)
                progress.update(step * scale)
                took = max(time.perf_counter() - started, 1e-6)
                chunk = min(rows, max(1, int(step * PROGRESS_SECONDS / took)))
        blocks = jax.device_get([record for record, _, _ in kept])
        return tuple(
            np.concatenate([np.take(rec[k], np.arange(lo, hi), axis=axis)
                            for rec, (_, lo, hi) in zip(blocks, kept, strict=True)], axis=axis)
            for k in range(len(blocks[0]))
        )

    start = time.perf_counter()
    if method == "sequential":
        outs = [run(init_c(data, z0[c], keys[c]), 1) for c in range(chains)]
        out = tuple(np.stack(parts) for parts in zip(*outs, strict=True))
    else:
        out = run(init_c(data, z0, keys), chains)
    sampling_seconds = time.perf_counter() - start
    if progress is not None:
        progress.close()
    z, potential, energy, n_steps, accept, diverging, step_size = (np.asarray(x) for x in out)
    stats = {
        "lp": -potential,
        "energy": energy,
        "n_steps": n_steps,
        "tree_depth": np.floor(np.log2(np.maximum(n_steps, 1))).astype(int) + 1,
        "acceptance_rate": accept,
        "diverging": diverging,
        "step_size": step_size,
    }
    return NutsDraws(z, stats, compile_seconds, sampling_seconds, method)


@dataclass(frozen=True)
class _Jaxified:
    """A PyTensor graph translated to JAX with its data lifted into arguments.

    ``fn(*inputs, *consts)``: PyTensor's JAX function, where ``consts`` are the graph's
    floating-point constants (design matrices, responses, prior parameters, folded or not)
    and the integer arrays it indexes with (group indices), in a fixed order. ``key``
    digests the traced program, the shapes and dtypes of ``consts`` and the values of
    any constant left in it, so data sets of the same shape share one key, one traced
    NUTS program and one compiled executable.
    """

    fn: Any
    consts: list[np.ndarray]
    key: tuple[str, str] | None


def _jaxify(inputs: list[Any], outputs: list[Any], example: list[np.ndarray]) -> _Jaxified:
    """PyMC's ``get_jaxified_graph`` with the data as arguments instead of constants."""
    import hashlib

    import jax
    from pymc.sampling.jax import _replace_shared_variables
    from pytensor.compile import mode
    from pytensor.graph import FunctionGraph
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.tensor.variable import TensorConstant

    def lift(min_ndim: int) -> list[np.ndarray]:
        """Replace the graph's data constants of ``min_ndim`` or more dimensions by inputs."""
        lifted: list[Any] = []
        for node in fgraph.toposort():  # a deterministic order
            indexing = type(node.op).__name__.startswith("AdvancedSubtensor")
            for pos, var in enumerate(node.inputs):
                if not isinstance(var, TensorConstant) or var in lifted or var.ndim < min_ndim:
                    continue
                if var.dtype.startswith("float") or (indexing and pos > 0 and var.ndim >= 1):
                    lifted.append(var)
        new = [c.type() for c in lifted]
        for var in new:
            fgraph.add_input(var)
        fgraph.replace_all(list(zip(lifted, new, strict=True)), import_missing=True)
        return [np.asarray(c.data) for c in lifted]

    fgraph = FunctionGraph(inputs=inputs, outputs=_replace_shared_variables(outputs),
                           clone=True)
    # Data arrays become inputs before the rewrites, which would otherwise merge equal-valued
    # arrays (two identical design columns) and give such a data set another program; the
    # scalars stay for the rewrites to fold and stabilise, and are lifted after them.
    consts = lift(1)
    mode.JAX.optimizer.rewrite(fgraph)
    consts += lift(0)
    fn = jax_funcify(fgraph)
    try:
        closed = jax.make_jaxpr(fn)(*example, *consts)
    except Exception:  # no key, no reuse: the sampler is traced as usual
        return _Jaxified(fn, consts, None)
    digest = hashlib.sha256(str(closed.jaxpr).encode())
    for arr in consts:
        digest.update(f"{arr.dtype}{arr.shape};".encode())
    for const in closed.consts:  # anything still baked in counts by value
        arr = np.asarray(const)
        digest.update(f"{arr.dtype}{arr.shape}".encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    return _Jaxified(fn, consts, ("jaxified", digest.hexdigest()))


#: jitted maps from draws to the model's variables, keyed by the lifted program's key
_POSTERIOR_MAPS: dict[Any, Any] = {}


def sample_pymc_jax(
    model: Any, settings: SamplerSettings, var_names: list[str]
) -> tuple[Any, float]:
    """Sample a PyMC model with numpyro's NUTS on its JAX log density, without ``pm.sample``.

    The log density of the unconstrained value variables is translated to JAX by
    PyTensor's JAX backend (no C compilation); starting points are PyMC's initial point
    plus PyMC's uniform(-1, 1) jitter on the unconstrained scale, drawn in numpy (no eager
    JAX evaluation); the draws are mapped back to the variables in ``var_names`` by one
    compiled, vectorised JAX function. Compiled programs are cached on disk by JAX (see
    :func:`configure_jax`).

    Parameters
    ----------
    model : pymc.Model
    settings : SamplerSettings
    var_names : list of str
        Variables kept in the posterior (free variables and deterministics).

    Returns
    -------
    tuple
        ``(idata, seconds)``: the DataTree laid out as ``pm.sample`` lays it out, and the
        wall time of the whole call.
    """
    import time

    import jax
    import pytensor
    from pymc.backends.arviz import coords_and_dims_for_inferencedata, find_observations
    from pymc.util import get_default_varnames

    start = time.perf_counter()
    configure_jax()
    seeds = seed_sequence(settings.random_seed).spawn(3)
    value_vars = model.value_vars
    # PyTensor would compile the initial point's inner Scan with its C backend (seconds,
    # and a warning about BLAS); its Python implementations are instantaneous here
    with pytensor.config.change_flags(cxx=""):
        point = model.initial_point(random_seed=int(seeds[0].generate_state(1)[0]))
    shapes = [np.shape(point[v.name]) for v in value_vars]
    sizes = [int(np.prod(shape)) for shape in shapes]
    bounds = np.cumsum([0, *sizes])
    flat = np.concatenate([np.ravel(point[v.name]) for v in value_vars]).astype(float)

    def unflatten(z: Any) -> list[Any]:
        return [z[..., a:b].reshape(*z.shape[:-1], *shape)
                for a, b, shape in zip(bounds[:-1], bounds[1:], shapes, strict=True)]

    example = [np.asarray(point[v.name], dtype=float) for v in value_vars]
    # the model's data are constants of PyTensor's JAX graph: lift them into an argument
    # of the compiled sampler, so data sets of the same shape reuse one program
    logp = _jaxify(value_vars, [model.logp()], example)

    def potential_fn_gen(consts: Any):
        return lambda z: -logp.fn(*unflatten(z), *consts)[0]

    jitter = numpy_rng(seeds[1]).uniform(-1, 1, size=(settings.chains, len(flat)))
    nuts = run_nuts(potential_fn_gen, logp.consts, flat + jitter, settings=settings,
                    seed=seeds[2], static_key=logp.key)

    wanted = [v for v in model.unobserved_value_vars if v.name in var_names]
    outputs = list(get_default_varnames(wanted, include_transformed=False))
    post = _jaxify(value_vars, outputs, example)
    chains, draws = nuts.z.shape[:2]
    flat_draws = nuts.z.reshape(chains * draws, -1)
    post_map = _POSTERIOR_MAPS.get(post.key) if post.key is not None else None
    if post_map is None:
        post_map = jax.jit(jax.vmap(lambda z, consts: post.fn(*unflatten(z), *consts),
                                    in_axes=(0, None)))
        if post.key is not None:
            if len(_POSTERIOR_MAPS) >= _COMPILED_MAX:
                _POSTERIOR_MAPS.pop(next(iter(_POSTERIOR_MAPS)))
            _POSTERIOR_MAPS[post.key] = post_map
    values = post_map(flat_draws, post.consts)
    posterior = {
        v.name: np.asarray(x).reshape(chains, draws, *np.shape(x)[1:])
        for v, x in zip(outputs, values, strict=True)
    }
    coords, dims = coords_and_dims_for_inferencedata(model)
    observed = {k: np.asarray(v) for k, v in find_observations(model).items()}
    idata = to_datatree(
        posterior, nuts.stats, observed=observed, coords=coords,
        dims={k: list(v) for k, v in dims.items() if k in posterior or k in observed},
        attrs=nuts_attrs(nuts, settings),
    )
    return idata, time.perf_counter() - start


def nuts_attrs(nuts: NutsDraws, settings: SamplerSettings, **extra: Any) -> dict[str, Any]:
    """Posterior attributes of a run of :func:`run_nuts`: library, times, chain method."""
    return {
        "inference_library": "numpyro",
        "sampling_time": nuts.sampling_seconds,
        "compile_time": nuts.compile_seconds,
        "chain_method": nuts.chain_method,
        "tuning_steps": settings.tune,
        **extra,
    }
