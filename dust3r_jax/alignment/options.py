"""The options of global alignment, stated once: one frozen dataclass that `global_align`,
`build_problem` and the initialisations take (as flax's lm1b hands one config to every module).

    options = AlignOptions(niter=500, lr=0.02)
    scene = global_align(output, options)
    scene = global_align(output, niter=500, lr=0.02)     # the same: keywords override the defaults

The defaults are the official `PointCloudOptimizer` + `compute_global_alignment` ones.
"""
import dataclasses

from dust3r_jax.errors import InputError

_CHOICES = {
    "mode": ("pointcloud", "modular", "pair"),
    "init": ("mst", "msp", "known_poses", None),
    "schedule": ("cosine", "linear"),
    "conf": ("log", "sqrt", "m1", "id", "none"),
    "dist": ("l1", "l2"),
    "init_backend": ("host", "device"),
}


@dataclasses.dataclass(frozen=True)
class AlignOptions:
    """mode: "pointcloud" (PointCloudOptimizer) or "modular" (ModularPointCloudOptimizer: per-pair
      mean loss, presets for some images) or "pair" (PairViewer: two images, no optimisation).
    init: "mst" (spanning tree), "known_poses" (every pose and focal preset), None (random start).
    niter, schedule ("cosine" | "linear"), lr, lr_min: the Adam loop (betas 0.9, 0.9).
    min_conf_thr: confidence threshold of masks and of the PnP points; conf: weight transform
      ("log", "sqrt", "m1", "id"); dist: "l1" (Euclidean distance) or "l2" (squared).
    base_scale, pw_break, focal_break, optimize_pp, allow_pw_adaptors, niter_PnP: as official.
    stale_focal: True reproduces the official MST focal quirk; False estimates a focal from the
      pair being processed.
    pnp_own_focal: init='known_poses' only; False reproduces the official PnP of image j's points
      with image i's focal, True uses image j's (correct when the focals differ).
    edge_chunk: >0 processes pairs in blocks of about this many (memory bounded by a block).
    chunk_iters: iterations per jitted chunk between progress updates.
    seed: of the random start (init=None) of the parameters.
    init_backend: where init="mst" runs: "host" (NumPy float64, `init.py`, the reference the
      official fixtures are checked against) or "device" (jitted JAX float32, `init_device.py`:
      same tree and order, poses within ~1e-5; meant for accelerators).
    """
    mode: str = "pointcloud"
    init: str | None = "mst"
    niter: int = 300
    schedule: str = "cosine"
    lr: float = 0.01
    lr_min: float = 1e-6
    min_conf_thr: float = 3.0
    conf: str = "log"
    dist: str = "l1"
    base_scale: float = 0.5
    pw_break: float = 20.0
    focal_break: float = 20.0
    optimize_pp: bool = False
    allow_pw_adaptors: bool = False
    niter_PnP: int = 10
    stale_focal: bool = True
    pnp_own_focal: bool = False
    edge_chunk: int = 0
    chunk_iters: int = 50
    seed: int = 0
    init_backend: str = "host"

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                shown = ", ".join(repr(a) for a in allowed)
                raise InputError(f"{name} must be one of {shown}, found {value!r}")
        for name in ("niter", "niter_PnP", "edge_chunk"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"{name} must be >= 0, found {getattr(self, name)}")
        if int(self.chunk_iters) < 1:
            raise InputError(f"chunk_iters must be >= 1, found {self.chunk_iters}")


def align_options(options: AlignOptions | None = None, **overrides) -> AlignOptions:
    """`options` (default: the defaults) with `overrides` replaced; an unknown name is one line
    listing the known ones."""
    options = AlignOptions() if options is None else options
    if not isinstance(options, AlignOptions):
        raise InputError(f"options must be an AlignOptions, found a {type(options).__name__}")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(AlignOptions)})
    if unknown:
        known = ", ".join(f.name for f in dataclasses.fields(AlignOptions))
        raise InputError(f"unknown alignment option(s) {', '.join(unknown)}; the options are: {known}")
    return dataclasses.replace(options, **overrides) if overrides else options
