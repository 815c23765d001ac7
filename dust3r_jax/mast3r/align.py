"""MASt3R's sparse global alignment (MASt3R-SfM), after the network: what the official
mast3r/cloud_opt/sparse_ga.py sparse_global_alignment does with the pairs' predictions.

    scene = sparse_align(images, {(i, j): (res11, res21, res22, res12), ...}, subsample=8)
    scene.get_im_poses(), scene.get_focals(), scene.get_dense_pts3d()

1. correspondences of each pair (`matching.pair_correspondences`: reciprocal matches both ways);
2. a canonical pointmap, anchor grid and focal per image (`canonical`);
3. the kinematic tree of the cameras (`kinematic`: hierarchical clustering or spanning tree);
4. the coarse stage (3D matching, poses and scales) and the refinement (2D reprojection,
   everything), each a jitted scan of Adam steps (`sparse_opt`).

The official function runs the network itself: `sparse_global_alignment` (in `sparse_ga`) does
that and calls `sparse_align`.
"""
import dataclasses

import jax
import numpy as np

from dust3r_jax.errors import InputError
from dust3r_jax.mast3r.kinematic import kinematic_tree
from dust3r_jax.mast3r.matching import pair_correspondences
from dust3r_jax.mast3r.sparse_opt import camera_model, init_sparse_params, points3d, run_stage
from dust3r_jax.mast3r.sparse_problem import build_sparse_problem
from dust3r_jax.mast3r.sparse_scene import SparseScene

__all__ = ["SparseAlignOptions", "sparse_align"]

_RESULTS = ("res11", "res21", "res22", "res12")


@dataclasses.dataclass(frozen=True)
class SparseAlignOptions:
    """The official sparse_scene_optimizer keywords (defaults as sparse_global_alignment's callers
    set them: lr2 0.014 as the official demo). loss1, loss2, lossd are the exponents of the official
    gamma_loss (1.5, 0.5, 1.1) rather than functions."""
    subsample: int = 8
    lr1: float = 0.07
    niter1: int = 300
    lr2: float = 0.014
    niter2: int = 300
    loss1: float = 1.5
    loss2: float = 0.5
    lossd: float = 1.1
    opt_pp: bool = True
    opt_depth: bool = True
    schedule: str = "cosine"
    depth_mode: str = "add"
    exp_depth: bool = False
    shared_intrinsics: bool = False
    matching_conf_thr: float = 5.0
    loss_dust3r_w: float = 0.01
    kinematic_mode: str = "hclust-ward"
    desc_conf: str = "desc_conf"

    # names read by sparse_opt
    gamma1 = property(lambda self: self.loss1)
    gamma2 = property(lambda self: self.loss2)
    gamma_dust3r = property(lambda self: self.lossd)


def _image_array(image, k):
    """An image as (H, W, 3) float in [0, 1]: an array (uint8 or float in [0, 1]) or a view dict of
    `load_images` ({'img': (1, H, W, 3) in [-1, 1]})."""
    if isinstance(image, dict):
        if "img" not in image:
            raise InputError(f"sparse_align: images[{k}] is a dict without 'img'")
        arr = np.asarray(image["img"], np.float32)
        arr = arr[0] if arr.ndim == 4 else arr
        return np.clip(arr * 0.5 + 0.5, 0, 1)
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise InputError(f"sparse_align: images[{k}] must be (H, W, 3); found shape {arr.shape}")
    return arr.astype(np.float32) / 255 if arr.dtype == np.uint8 else arr.astype(np.float32)


def check_inputs(images, pair_predictions, options):
    """(image arrays, {(i, j): results} one per unordered pair in order, [(a, b), ...] as listed)."""
    imgs = [_image_array(im, k) for k, im in enumerate(images)]
    n = len(imgs)
    if n < 2:
        raise InputError(f"sparse_align: needs at least 2 images; got {n}")
    s = options.subsample
    for k, im in enumerate(imgs):
        if im.shape[0] % s or im.shape[1] % s:
            raise InputError(f"sparse_align: image {k} of shape {im.shape[:2]} is not a multiple of subsample={s}")
    pairs, directed, widths = {}, [], set()
    for key, results in pair_predictions.items():
        if (not isinstance(key, tuple) or len(key) != 2 or not all(isinstance(v, (int, np.integer)) for v in key)
                or key[0] == key[1] or not all(0 <= v < n for v in key)):
            raise InputError(f"sparse_align: pair key {key!r} must be (i, j) with i != j image indices in [0, {n})")
        i, j = int(key[0]), int(key[1])
        if len(results) != 4:
            raise InputError(f"sparse_align: pair ({i}, {j}) must hold the four results (res11, res21, res22, res12); "
                             f"got {len(results)}")
        for name, res, img in zip(_RESULTS, results, (i, j, j, i)):
            for field in ("pts3d", "conf", "desc", options.desc_conf):
                if field not in res:
                    raise InputError(f"sparse_align: pair ({i}, {j}) {name} has no {field!r}; keys: {sorted(res)}")
            H, W = imgs[img].shape[:2]
            expect = {"pts3d": (H, W, 3), "conf": (H, W), options.desc_conf: (H, W)}
            for field, shape in expect.items():
                if np.shape(res[field]) != shape:
                    raise InputError(f"sparse_align: pair ({i}, {j}) {name}[{field!r}] has shape {np.shape(res[field])}; "
                                     f"expected {shape} (image {img})")
            if np.shape(res["desc"])[:2] != (H, W) or np.ndim(res["desc"]) != 3:
                raise InputError(f"sparse_align: pair ({i}, {j}) {name}['desc'] has shape {np.shape(res['desc'])}; "
                                 f"expected ({H}, {W}, D) (image {img})")
            widths.add(np.shape(res["desc"])[2])
        if len(widths) > 1:
            raise InputError(f"sparse_align: descriptors of different widths {sorted(widths)} (pair ({i}, {j}))")
        directed.append((i, j))
        # the reverse of a listed pair is the same data (the official reads it from its cache)
        if (j, i) not in pairs:
            pairs[i, j] = tuple({k: np.asarray(v) for k, v in res.items()} for res in results)
    seen = {v for pair in directed for v in pair}
    missing = sorted(set(range(n)) - seen)
    if missing:
        raise InputError(f"sparse_align: image(s) {missing} appear in no pair; every image needs at least one pair")
    return imgs, pairs, list(dict.fromkeys(directed))


def _optimise(problem, tree, options):
    """The two stages. Returns (K, cam2w, depth (A,), sparse points (P, 3), losses)."""
    data = jax.tree.map(np.asarray, problem.device_arrays())
    params = init_sparse_params(problem, options.shared_intrinsics, options.exp_depth)
    shared = ("pp", "log_focal") if options.shared_intrinsics else ()
    report, losses = params, {}
    tree = (int(tree[0]), tuple((int(a), int(b)) for a, b in tree[1]))
    stages = [("3d", ("quat", "trans", "log_size"), options.niter1, options.lr1)]
    if options.niter2:
        trainable = ("quat", "trans", "log_size", "log_focal") + (("pp",) if options.opt_pp else ()) \
            + (("core_depth",) if options.opt_depth else ())
        stages.append(("2d", trainable, options.niter2, options.lr2))
    for stage, trainable, niter, lr in stages:
        if niter == 0:
            report = params
            continue
        params, report, loss = run_stage(params, data, tree=tree, stage=stage, trainable=trainable,
                                         shared=tuple(k for k in shared if k in trainable), niter=niter,
                                         lr_base=float(lr), options=options)
        losses[stage] = float(loss)
    K, cam2w, _, depth = camera_model(report, data, tree, options.depth_mode, options.exp_depth)
    pts = points3d(K, cam2w, depth, data["pt_img"], data["pt_uv"], data["pt_anchor"], data["pt_offset"],
                   data["base_focals"])
    return np.asarray(K), np.asarray(cam2w), np.asarray(depth), np.asarray(pts), losses


def sparse_align(images, pair_predictions, subsample=8, lr1=0.07, niter1=300, lr2=0.014, niter2=300,
                 opt_depth=True, matching_conf_thr=5.0, kinematic_mode="hclust-ward", shared_intrinsics=False,
                 **kw):
    """Sparse global alignment of N images from the predictions of their pairs.

    images: N images, each (H, W, 3) (uint8, or float in [0, 1]) or a `load_images` view dict;
      they give the shapes and the colours of the points. H and W must be multiples of subsample.
    pair_predictions: {(i, j): (res11, res21, res22, res12)} the four results of
      `symmetric_inference` on images i and j, dicts of 'pts3d' (H, W, 3), 'conf' (H, W),
      'desc' (H, W, D), 'desc_conf' (H, W) (res11 and res12 of image i, res21 and res22 of image j;
      res11, res21 in camera i's frame, res22, res12 in camera j's). When both (i, j) and (j, i)
      are given, the first one's predictions are used for both, as the official cache does.
    The keywords are those of the official sparse_global_alignment / sparse_scene_optimizer
    (`SparseAlignOptions`).
    Returns a `SparseScene`.
    """
    options = SparseAlignOptions(subsample=subsample, lr1=lr1, niter1=niter1, lr2=lr2, niter2=niter2,
                                 opt_depth=opt_depth, matching_conf_thr=matching_conf_thr,
                                 kinematic_mode=kinematic_mode, shared_intrinsics=shared_intrinsics,
                                 **_options_kw(kw))
    imgs, pairs, directed = check_inputs(images, pair_predictions, options)
    corres = {key: pair_correspondences(*results, subsample=subsample, desc_conf=options.desc_conf)
              for key, results in pairs.items()}
    problem = build_sparse_problem([im.shape[:2] for im in imgs], pairs, directed, corres, subsample, matching_conf_thr)
    tree = kinematic_tree(problem.scores, problem.imsizes, subsample, kinematic_mode)
    K, cam2w, depth, pts, losses = _optimise(problem, tree, options)
    starts, grid = problem.pt_start, problem.grid_start
    pts3d = [pts[starts[i]:starts[i + 1]] for i in range(problem.n_imgs)]
    colors = []
    for i, im in enumerate(imgs):
        x, y = problem.pt_uv[starts[i]:starts[i + 1]].astype(np.int64).T
        colors.append(im[y, x])
    return SparseScene(intrinsics=K, cam2w=cam2w, depthmaps=[depth[grid[i]:grid[i + 1]] for i in range(len(imgs))],
                       pts3d=pts3d, colors=colors, imgs=imgs, problem=problem, tree=tree, corres=corres,
                       losses=losses)


def _options_kw(kw):
    kw = dict(kw)
    for name in ("loss1", "loss2", "lossd"):
        if callable(kw.get(name)):
            raise InputError(f"sparse_align: {name} is the exponent of the official gamma_loss (a number), not a function")
    if kw.pop("lora_depth", False):
        raise InputError("sparse_align: lora_depth is not supported")
    if kw.pop("init", None):
        raise InputError("sparse_align: init (preset cameras) is not supported (the official code asserts it away too)")
    kw.pop("verbose", None)
    kw.pop("dbg", None)
    names = {f.name for f in dataclasses.fields(SparseAlignOptions)}
    unknown = sorted(set(kw) - names)
    if unknown:
        raise InputError(f"sparse_align: unknown keyword(s) {unknown}")
    return kw
