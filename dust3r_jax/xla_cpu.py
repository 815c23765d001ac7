"""A per-compilation XLA:CPU option that makes large programs faster on CPU, and when to use it.

XLA:CPU hands some fusions and dots to YNNPACK by default. That pays for small programs and costs
for large ones, on both the alignment loop and the network, measured on the project's 2-core CPU:

* alignment loss (elementwise chains over every pixel of every pair, ending in reductions): ms per
  iteration, default / option: 6 images at 224 36 / 51, 8 at 144x192 35 / 44, 2 at 512x384 16 / 21,
  but 7 at 224 89 / 64, 8 at 224 121 / 80, 3 at 512x384 90 / 49: the measured cases split at one
  number, (pairs of an image on one side) x (its pixels), 2^18 (`CpuPolicy.alignment_min_row_pixels`);
* network forward, 512x384 (768 tokens per image): encoder of two images 9.5-9.9 / 9.8-11.8 s,
  decoders + DPT heads 5.7-6.3 / 6.5-7.7 s, one DPT head 1.2-1.6 / 1.5-1.7 s (option / default);
  at 224 (196 tokens) the default is 5-20% faster: from 512 tokens per image the option
  (`CpuPolicy.forward_min_tokens`; sizes between 196 and 768 tokens were not measured).

The option is set per compilation (`jax.jit(..., compiler_options=...)`), so nothing else in the
process changes, and only on the CPU backend. It is experimental in XLA: a one-time probe turns
it off if this jaxlib does not know it. The thresholds and the option are one `CpuPolicy`;
`using(policy)` switches it for a block (benchmarks measuring both sides, tests of either path).
"""
import contextlib
import dataclasses
import functools

import jax


@dataclasses.dataclass(frozen=True)
class CpuPolicy:
    """When a jitted program compiles with `options` on the CPU backend (see the module docstring)."""
    forward_min_tokens: int = 512              # network: tokens per image, from which the option pays
    alignment_min_row_pixels: int = 2 ** 18    # alignment: (pairs of an image on one side) x its pixels
    options: tuple = (("xla_cpu_experimental_ynn_fusion_type", ""),)  # YNNPACK fusions off


_current = [CpuPolicy()]


def policy() -> CpuPolicy:
    """The policy in force."""
    return _current[-1]


@contextlib.contextmanager
def using(new_policy: CpuPolicy):
    """`with xla_cpu.using(CpuPolicy(forward_min_tokens=0)): ...` applies `new_policy` in the block
    (to calls made there; compiled programs are cached per choice, so nothing is stale after)."""
    _current.append(new_policy)
    try:
        yield new_policy
    finally:
        _current.pop()


def supported(options: tuple | None = None) -> bool:
    """Whether this jaxlib knows `options` (default: the policy's; a later XLA may rename them)."""
    return _probe(policy().options if options is None else options)


@functools.cache
def _probe(options: tuple) -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options=dict(options)).lower(1.0).compile()
        return True
    except Exception:  # noqa: BLE001 - any refusal means: compile without it
        return False


def ynn_off_options(backend=None) -> dict:
    """The policy's compiler options, or {} off the CPU backend or where this XLA does not know
    them. `backend`: a platform name; default the default backend."""
    options = policy().options
    if (backend or jax.default_backend()) != "cpu" or not supported(options):
        return {}
    return dict(options)


def jit_choosing_options(fn, wants_ynn_off, **jit_kwargs):
    """`jax.jit(fn, **jit_kwargs)` that compiles a call with the policy's options when
    `wants_ynn_off(*args)` says so (it reads the policy's thresholds) and the default backend is
    the CPU. The backend and the policy are looked up at each call, not at import."""
    plain = jax.jit(fn, **jit_kwargs)

    @functools.cache
    def tuned(options):
        return jax.jit(fn, compiler_options=dict(options), **jit_kwargs)

    @functools.wraps(fn)
    def call(*args):
        options = ynn_off_options() if wants_ynn_off(*args) else {}
        return (tuned(tuple(sorted(options.items()))) if options else plain)(*args)
    return call
