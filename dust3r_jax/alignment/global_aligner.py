"""The official aligner objects, `global_aligner(output, device, mode)`, over `global_align`.

    scene = global_aligner(output, device="cpu", mode=GlobalAlignerMode.PointCloudOptimizer)
    loss = scene.compute_global_alignment(init="mst", niter=300, schedule="cosine", lr=0.01)
    scene.get_im_poses(), scene.get_focals(), scene.get_pts3d(), scene.get_masks()

Names and shapes mirror dust3r/cloud_opt: `__init__.py` (global_aligner, GlobalAlignerMode),
`base_opt.py` (BasePCOptimizer read-outs, clean_pointcloud, show), `optimizer.py` and
`modular_optimizer.py` (presets), `pair_viewer.py`. Read-outs are NumPy arrays where the official
ones are torch tensors. Every number comes from `dust3r_jax.alignment.global_align` and its
`Scene` (`aligner.scene`), which JAX code can use directly.
"""
import contextlib
import copy
import enum

import jax
import numpy as np

from dust3r_jax.devices import resolve_device
from dust3r_jax.errors import ConfigError, InputError


class GlobalAlignerMode(enum.Enum):
    PointCloudOptimizer = "PointCloudOptimizer"
    ModularPointCloudOptimizer = "ModularPointCloudOptimizer"
    PairViewer = "PairViewer"


# official mode -> global_align's mode
_MODES = {GlobalAlignerMode.PointCloudOptimizer: "pointcloud",
          GlobalAlignerMode.ModularPointCloudOptimizer: "modular",
          GlobalAlignerMode.PairViewer: "pair"}
# constructor keywords of the official optimisers (and global_align's own) -> global_align keywords;
# `focal_brake` is ModularPointCloudOptimizer's spelling
_OPTIONS = {name: name for name in ("min_conf_thr", "base_scale", "allow_pw_adaptors", "pw_break", "dist", "conf",
                                    "optimize_pp", "focal_break", "stale_focal", "pnp_own_focal", "edge_chunk",
                                    "chunk_iters", "seed")}
_OPTIONS["focal_brake"] = "focal_break"
_IGNORED = ("iterationsCount",)  # accepted and unused by the official code too


def global_aligner(dust3r_output, device=None, mode=GlobalAlignerMode.PointCloudOptimizer, **optim_kw):
    """The official entry point: an aligner of `inference()`'s output (see `GlobalAligner`).

    device: "cpu", "cuda", "gpu", "tpu" or a jax.Device (None: JAX's default) for the optimisation.
    mode: a GlobalAlignerMode (or its name). optim_kw: the official constructor keywords
    (verbose, min_conf_thr, base_scale, allow_pw_adaptors, pw_break, dist, conf, optimize_pp,
    focal_break), plus global_align's own (stale_focal, pnp_own_focal, edge_chunk, chunk_iters, seed).
    """
    return GlobalAligner(dust3r_output, device=device, mode=mode, **optim_kw)


def _mode(mode):
    try:
        return GlobalAlignerMode(mode.value if isinstance(mode, GlobalAlignerMode) else mode)
    except ValueError:
        raise ConfigError(f"mode {mode!r}: expected GlobalAlignerMode.PointCloudOptimizer, "
                          "ModularPointCloudOptimizer or PairViewer") from None


def _msk_indices(msk, n_imgs):
    """Image indices selected by a preset's mask, as the official `_get_msk_indices`."""
    if msk is None:
        return list(range(n_imgs))
    if isinstance(msk, (int, np.integer)):
        return [int(msk)]
    msk = np.asarray(msk)
    if msk.dtype == bool:
        if msk.shape != (n_imgs,):
            raise InputError(f"mask: a boolean mask needs {n_imgs} entries, found shape {msk.shape}")
        return np.flatnonzero(msk).tolist()
    if np.issubdtype(msk.dtype, np.integer):
        return msk.ravel().tolist()
    raise InputError(f"mask: expected None, an index, a list of indices or a boolean mask, found dtype {msk.dtype}")


class GlobalAligner:
    """PointCloudOptimizer / ModularPointCloudOptimizer / PairViewer with the official methods.

    A PairViewer is computed when built; the optimisers by `compute_global_alignment`, after
    which the read-outs (`get_im_poses()`, ...) are available.
    """

    def __init__(self, dust3r_output, device=None, mode=GlobalAlignerMode.PointCloudOptimizer, **optim_kw):
        self.mode = _mode(mode)
        self.device = resolve_device(device)
        unknown = sorted(set(optim_kw) - set(_OPTIONS) - set(_IGNORED) - {"verbose", "fx_and_fy"})
        if unknown:
            raise ConfigError(f"global_aligner: unknown option {unknown[0]!r}; accepted: verbose, "
                              f"{', '.join(sorted(_OPTIONS))}")
        if optim_kw.get("fx_and_fy"):
            raise ConfigError("global_aligner: fx_and_fy=True (separate fx, fy) is not supported; focals are fx = fy")
        self.verbose = bool(optim_kw.get("verbose", True))
        self.min_conf_thr = float(optim_kw.get("min_conf_thr", 3.0))
        self._options = {_OPTIONS[k]: v for k, v in optim_kw.items() if k in _OPTIONS and k != "min_conf_thr"}
        self._output = dust3r_output
        self._presets = {"known_poses": {}, "known_focals": {}, "known_pp": {}}
        self._pairs = None
        self._scene = None
        if self.mode is GlobalAlignerMode.PairViewer:
            self._scene = self._align(mode="pair")

    # ---- running the functional aligner ----------------------------------------------------
    def _align(self, **kwargs):
        from dust3r_jax.alignment import global_align

        with jax.default_device(self.device) if self.device is not None else contextlib.nullcontext():
            return global_align(self._output, min_conf_thr=self.min_conf_thr, verbose=self.verbose, **kwargs)

    def compute_global_alignment(self, init=None, niter_PnP=10, niter=300, schedule="cosine", lr=0.01,
                                 lr_min=1e-6):
        """Initialise (init: "mst" / "msp", "known_poses", or None for a random start) and run
        `niter` Adam iterations with the `schedule` ("cosine" | "linear") from `lr` to `lr_min`.
        Returns the loss of the last iteration (with niter=0, the loss of the initial state)."""
        if self.mode is GlobalAlignerMode.PairViewer:
            raise ConfigError("compute_global_alignment: a PairViewer has nothing to optimise (its scene is "
                              "computed when built); use mode=GlobalAlignerMode.PointCloudOptimizer to optimise")
        if init is None and self._scene is not None:
            raise ConfigError("compute_global_alignment(init=None) would continue the previous alignment, which "
                              "this port does not do; pass init='mst' (or 'known_poses') to align again")
        presets = {k: (v or None) for k, v in self._presets.items()}
        self._scene = self._align(mode=_MODES[self.mode], init=init, niter=niter, schedule=schedule, lr=lr,
                                  lr_min=lr_min, niter_PnP=niter_PnP, **presets, **self._options)
        return self._scene.loss

    @property
    def scene(self):
        """The functional `dust3r_jax.alignment.Scene` behind the read-outs."""
        if self._scene is None:
            raise ConfigError("the scene is not aligned yet; call compute_global_alignment(init='mst', ...) first")
        return self._scene

    def _input_pairs(self):
        if self._pairs is None:
            from dust3r_jax.alignment.inputs import read_pairs
            self._pairs = read_pairs(self._output)
        return self._pairs

    # ---- presets (before compute_global_alignment) -----------------------------------------
    def _preset(self, key, values, msk, value_ndim):
        if self.mode is GlobalAlignerMode.PairViewer:
            raise ConfigError(f"{key}: a PairViewer takes no presets; use mode=GlobalAlignerMode.PointCloudOptimizer "
                              "or ModularPointCloudOptimizer")
        values = np.asarray(values, np.float64)
        if values.ndim == value_ndim:  # one value, as the official presets accept a single (4, 4) pose
            values = values[None]
        for idx, value in zip(_msk_indices(msk, self.n_imgs), values):
            self._presets[key][idx] = np.asarray(value, np.float64)

    def preset_pose(self, known_poses, pose_msk=None):
        """Fix the cam2world (4, 4) pose of the images selected by `pose_msk` (None: all)."""
        self._preset("known_poses", known_poses, pose_msk, 2)

    def preset_focal(self, known_focals, msk=None):
        """Fix the focal (pixels) of the images selected by `msk` (None: all)."""
        self._preset("known_focals", known_focals, msk, 0)

    def preset_principal_point(self, known_pp, msk=None):
        """Fix the principal point (cx, cy) of the images selected by `msk` (None: all)."""
        self._preset("known_pp", known_pp, msk, 1)

    def preset_intrinsics(self, known_intrinsics, msk=None):
        """Fix focal (mean of fx, fy) and principal point from (3, 3) intrinsics."""
        Ks = np.asarray(known_intrinsics, np.float64).reshape(-1, 3, 3)
        self.preset_focal([K.diagonal()[:2].mean() for K in Ks], msk)
        self.preset_principal_point([K[:2, 2] for K in Ks], msk)

    # ---- read-outs ----------------------------------------------------------------------------
    @property
    def n_imgs(self):
        return len(self.imshapes)

    @property
    def imshapes(self):
        return list(self._scene.imshapes if self._scene is not None else self._input_pairs().imshapes)

    @property
    def edges(self):
        return list(self._scene.edges if self._scene is not None else self._input_pairs().edges)

    @property
    def imgs(self):
        """Per image (H, W, 3) float colours in [0, 1]."""
        return self._scene.imgs if self._scene is not None else self._input_pairs().imgs

    @property
    def im_conf(self):
        """Per image (H, W) confidence: max over the pairs (lowered by clean_pointcloud)."""
        return list(self._scene.conf if self._scene is not None else self._input_pairs().im_conf)

    def get_focals(self):
        """(N, 1) focals in pixels ((2,) for a PairViewer, as official)."""
        focals = np.asarray(self.scene.focals)
        return focals if self.mode is GlobalAlignerMode.PairViewer else focals.reshape(-1, 1)

    def get_principal_points(self):
        """(N, 2) principal points (cx, cy)."""
        return np.asarray(self.scene.principal_points)

    def get_intrinsics(self):
        """(N, 3, 3) K."""
        return np.asarray(self.scene.intrinsics)

    def get_im_poses(self):
        """(N, 4, 4) cam2world."""
        return np.asarray(self.scene.cam2world)

    def get_pw_poses(self):
        """(E, 4, 4) scaled pair-to-world transforms."""
        return self.scene.pw_poses

    def get_pw_scale(self):
        """(E,) pairwise scales."""
        return self.scene.pw_scale

    def get_depthmaps(self):
        """Per image (H, W) depth along the camera z axis."""
        return list(self.scene.depthmaps)

    def get_pts3d(self):
        """Per image (H, W, 3) world points."""
        return list(self.scene.pts3d)

    def get_conf(self, mode=None):
        """Per image (H, W) confidence transformed as the loss weighs it (`conf` option, default 'log')."""
        from dust3r_jax.alignment.objective import conf_to_weight
        mode = self._options.get("conf", "log") if mode is None else mode
        return [np.asarray(conf_to_weight(np.asarray(c), mode)) for c in self.im_conf]

    def get_masks(self):
        """Per image (H, W) bool: confidence > `min_conf_thr` (the attribute, settable)."""
        return self.scene.masks(self.min_conf_thr)

    # ---- post-processing and display ------------------------------------------------------
    def clean_pointcloud(self, tol=0.001, max_bad_conf=0):
        """A copy whose confidences of points seen through by another camera are lowered to
        `max_bad_conf` (see `Scene.clean_pointcloud`)."""
        cleaned = copy.copy(self)
        cleaned._scene = self.scene.clean_pointcloud(tol=tol, bad_conf=max_bad_conf)
        return cleaned

    def show(self, **kwargs):
        """Open the masked point cloud and cameras in trimesh's viewer (needs pyglet and a display).
        kwargs go to `trimesh.Scene.show`. Returns the trimesh scene."""
        from dust3r_jax.export.glb import build_glb_scene
        from dust3r_jax.export.scene import SceneArrays

        scene = self.scene
        n = self.n_imgs
        imgs = [np.asarray(img, np.float32) if img is not None else np.full(tuple(hw) + (3,), 0.5, np.float32)
                for img, hw in zip(scene.imgs or [None] * n, scene.imshapes)]
        arrays = SceneArrays(names=[f"image_{i}" for i in range(n)], files=[f"image_{i}" for i in range(n)],
                             imgs=imgs, depths=list(scene.depthmaps), confs=list(scene.conf), pts3d=list(scene.pts3d),
                             masks=self.get_masks(), cam2world=np.asarray(scene.cam2world, np.float64),
                             intrinsics=np.asarray(scene.intrinsics, np.float64),
                             to_original=[np.eye(3)] * n, original_shapes=[tuple(hw) for hw in scene.imshapes])
        viz = build_glb_scene(arrays)
        try:
            viz.show(**kwargs)
        except Exception as err:  # trimesh raises ImportError without pyglet, pyglet errors without a display
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RuntimeError(f"scene.show(): no 3D viewer here ({reason}); trimesh's viewer needs pyglet<2 and a "
                               "display. Write the scene with dust3r_jax.export.glb.write_glb, or run `dust3r-jax "
                               "reconstruct`, and open scene.glb in any glTF viewer") from None
        return viz
