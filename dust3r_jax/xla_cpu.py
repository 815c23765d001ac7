"""A per-compilation XLA:CPU option that makes large programs faster on CPU, and when to use it.

XLA:CPU hands some fusions and dots to YNNPACK by default. That pays for small programs and costs
for large ones, on both the alignment loop and the network, measured on the project's 2-core CPU:

* alignment loss (elementwise chains over every pixel of every pair, ending in reductions): ms per
  iteration, default / option: 6 images at 224 36 / 51, 8 at 144x192 35 / 44, 2 at 512x384 16 / 21,
  but 7 at 224 89 / 64, 8 at 224 121 / 80, 3 at 512x384 90 / 49 (`alignment/optimize.py` decides);
* network forward, 512x384 (768 tokens per image): encoder of two images 9.5-9.9 / 9.8-11.8 s,
  decoders + DPT heads 5.7-6.3 / 6.5-7.7 s, one DPT head 1.2-1.6 / 1.5-1.7 s (option / default);
  at 224 (196 tokens) the default is 5-20% faster (`inference.forward_compiler_options` decides).

The option is set per compilation (`jax.jit(..., compiler_options=...)`), so nothing else in the
process changes, and only on the CPU backend. It is experimental in XLA: a one-time probe turns
it off if this jaxlib does not know it.
"""
import functools

import jax

_YNN_OFF = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def _supported():
    """Whether this jaxlib knows the option (a later XLA may rename it)."""
    try:
        jax.jit(lambda x: x + 1, compiler_options=_YNN_OFF).lower(1.0).compile()
        return True
    except Exception:  # noqa: BLE001 - any refusal means: compile without it
        return False


def ynn_off_options(backend=None):
    """The compiler options that turn YNNPACK fusions off, or {} off the CPU backend or where this
    XLA does not know them. `backend`: a platform name; default the default backend."""
    if (backend or jax.default_backend()) != "cpu" or not _supported():
        return {}
    return dict(_YNN_OFF)


def jit_choosing_options(fn, wants_ynn_off, **jit_kwargs):
    """`jax.jit(fn, **jit_kwargs)` that compiles a call with YNNPACK fusions off when
    `wants_ynn_off(*args)` says so and the default backend is the CPU. The backend is looked up at
    the call, not at import (which must not start a backend)."""
    plain = jax.jit(fn, **jit_kwargs)

    @functools.cache
    def tuned():
        return jax.jit(fn, compiler_options=_YNN_OFF, **jit_kwargs)

    @functools.wraps(fn)
    def call(*args):
        return (tuned() if wants_ynn_off(*args) and ynn_off_options() else plain)(*args)
    return call
