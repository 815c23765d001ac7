"""The alignment objective as a pure JAX function of (parameters, pair data).

Layout. Images are grouped by shape (nothing is padded to the largest image: memory grows with the
pixels actually present) and each side of the pairs is laid out by image (see `SideGroup`).
`Layout` holds the static structure (hashable, a `jit` static argument); `pack_data` builds the
array pytree; `loss` evaluates

    sum_e sum_pix w_i ||X_world[i] - T_e(pred_i)|| / A_i  +  (same for j) / A_j      ("pointcloud")
    (1 / E) sum_e [mean_pix w_i ||...|| + mean_pix w_j ||...||]                      ("modular")

with T_e the scaled pair pose and A_i = sum over pairs of the pixel count of their first image.
With `edge_chunk`, each side group is processed in blocks of about that many pairs (whole images)
under `lax.scan` with rematerialisation, so the memory of one evaluation (and of its gradient)
beyond the inputs is bounded by a block.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dust3r_jax.geometry import xy_grid
from dust3r_jax.alignment import params as P


@dataclasses.dataclass(frozen=True)
class SideGroup:
    """One side (i: first images, j: second images) of the pairs whose image on that side belongs to
    one image-shape group. edge_ids is (n_g, D): for each image of the group (row, in the group's
    order), the pairs where it is on this side, padded with -1 up to the largest count D (padded
    slots have zero weight). Laying pairs out by image lets each image's world points broadcast
    over its pairs: no gather, and no scatter in the backward pass."""
    side: str
    group: int
    edge_ids: tuple


@dataclasses.dataclass(frozen=True)
class Layout:
    imshapes: tuple                 # (H, W) per image
    edges: tuple                    # (i, j) per pair
    image_groups: tuple             # ((H, W), (image indices...)) per shape group
    side_groups: tuple              # SideGroup per (side, image group)
    edge_chunk: int = 0             # >0: about this many pairs per block under lax.scan + remat
    loss_mode: str = "pointcloud"   # or "modular" (mean per pair, as the modular optimiser)
    dist: str = "l1"
    conf: str = "log"
    base_scale: float = 0.5
    pw_break: float = 20.0
    focal_break: float = 20.0
    norm_pw_scale: bool = True
    pw_adaptors: bool = False       # False: adaptors frozen at 0, i.e. exactly 1, and skipped

    @property
    def n_imgs(self):
        return len(self.imshapes)

    @property
    def total_area_i(self):
        return sum(self.imshapes[i][0] * self.imshapes[i][1] for i, _ in self.edges)

    @property
    def total_area_j(self):
        return sum(self.imshapes[j][0] * self.imshapes[j][1] for _, j in self.edges)


def make_layout(imshapes, edges, edge_chunk=0, slot_multiple=1, **options):
    """Group images by shape (first-seen order) and lay each side of the pairs out by image.
    slot_multiple: pad the pair slots D of every side group to a multiple of this (the device
    count when the slots are sharded over a mesh; padded slots weigh nothing)."""
    imshapes = tuple(tuple(int(s) for s in hw) for hw in imshapes)
    edges = tuple((int(i), int(j)) for i, j in edges)
    shapes = list(dict.fromkeys(imshapes))
    image_groups = tuple((hw, tuple(n for n, s in enumerate(imshapes) if s == hw)) for hw in shapes)
    side_groups = []
    for side, k in (("i", 0), ("j", 1)):
        pairs_of = [[] for _ in imshapes]  # (one pass over the pairs: scenes have 10^4-10^5 of them)
        for e, ij in enumerate(edges):
            pairs_of[ij[k]].append(e)
        for g, (_, members) in enumerate(image_groups):
            per_image = [pairs_of[n] for n in members]
            D = max(len(p) for p in per_image)
            if D == 0:
                continue
            D = -(-D // slot_multiple) * slot_multiple
            ids = tuple(tuple(p + [-1] * (D - len(p))) for p in per_image)
            side_groups.append(SideGroup(side, g, ids))
    return Layout(imshapes, edges, image_groups, tuple(side_groups), int(edge_chunk or 0), **options)


def _block_rows(layout, sg):
    """Images per block for a side group (0: no blocking)."""
    if not layout.edge_chunk:
        return 0
    n_rows, D = len(sg.edge_ids), len(sg.edge_ids[0])
    rows = max(1, layout.edge_chunk // D)
    return rows if rows < n_rows else 0


def pack_data(layout, pred_i, pred_j, conf_i, conf_j):
    """Per-pair NumPy lists -> list over side groups of {pred (R, D, 3, HW), conf (R, D, HW)}
    float32, R = images of the group (padded to a multiple of the block when blocking), padded
    slots with confidence 0. Coordinates are stored apart (3, HW), not interleaved (HW, 3): each
    coordinate is then a contiguous vector, which XLA vectorises ~8x better on CPU."""
    data = []
    for sg in layout.side_groups:
        preds, confs = (pred_i, conf_i) if sg.side == "i" else (pred_j, conf_j)
        hw = layout.image_groups[sg.group][0]
        ids = np.asarray(sg.edge_ids)
        rows = _block_rows(layout, sg)
        n_rows = len(ids) + (-len(ids) % rows if rows else 0)
        pred = np.zeros((n_rows, ids.shape[1], 3, hw[0] * hw[1]), np.float32)
        conf = np.zeros((n_rows, ids.shape[1], hw[0] * hw[1]), np.float32)
        for r, c in zip(*np.nonzero(ids >= 0)):
            pred[r, c] = np.asarray(preds[ids[r, c]], np.float32).reshape(-1, 3).T
            conf[r, c] = np.asarray(confs[ids[r, c]], np.float32).ravel()
        data.append({"pred": jnp.asarray(pred), "conf": jnp.asarray(conf)})
    return data


def pack_depth(layout, depth_per_image):
    """Per-image (H_i * W_i,) log-depth list -> list over image groups of (n_g, H_g * W_g)."""
    return [jnp.asarray(np.stack([np.asarray(depth_per_image[n], np.float32).ravel() for n in members]))
            for _, members in layout.image_groups]


def unpack_depth(layout, depth_groups):
    """Inverse of `pack_depth`: list of per-image (H_i, W_i) arrays (NumPy)."""
    out = [None] * layout.n_imgs
    for (hw, members), arr in zip(layout.image_groups, depth_groups):
        arr = np.asarray(arr)
        for k, n in enumerate(members):
            out[n] = arr[k].reshape(hw)
    return out


def conf_to_weight(conf, mode="log"):
    """Pixel weights from confidences: log / sqrt / m1 (conf - 1) / id. Confidences <= 0 (ignored
    pixels) get weight 0, and weights are clipped at 0 so that no pixel pushes residuals up
    (identical to the official weights for DUSt3R confidences, which are >= 1)."""
    valid = conf > 0
    safe = jnp.where(valid, conf, 1.0)
    if mode == "log":
        w = jnp.log(safe)
    elif mode == "sqrt":
        w = jnp.sqrt(safe)
    elif mode == "m1":
        w = safe - 1
    elif mode in ("id", "none"):
        w = safe
    else:
        raise ValueError(f"conf must be one of log, sqrt, m1, id, none; found {mode!r}")
    return jnp.where(valid, jnp.maximum(w, 0.0), 0.0)


def prepare(layout, data):
    """Confidences -> weights, once before the iterations (keeps conf differentiable)."""
    return [{"pred": d["pred"], "w": conf_to_weight(d["conf"], layout.conf)} for d in data]


def _rigid(pts, pose):
    """pts (..., 3, P) -> R pts + t (..., 3, P) for poses (..., 4, 4) with the same leading dims
    (coordinates apart, see `pack_data`; written per coordinate so that XLA fuses it)."""
    return jnp.stack([pose[..., r, 0, None] * pts[..., 0, :] + pose[..., r, 1, None] * pts[..., 1, :]
                      + pose[..., r, 2, None] * pts[..., 2, :] + pose[..., r, 3, None] for r in range(3)], axis=-2)


def world_points(layout, params):
    """Per image group (n_g, 3, H_g * W_g) world points of the current depth maps and cameras
    (coordinates apart: transpose the last two axes for (HW, 3))."""
    focals = P.focals_from_params(params["im_focals"], layout.focal_break)
    pps = P.principal_points(params["im_pp"], layout.imshapes)
    cam2world = P.decode_poses(params["im_poses"])
    out = []
    for ((H, W), members), log_depth in zip(layout.image_groups, params["depth"]):
        idx = np.asarray(members)
        grid = xy_grid(W, H, dtype=log_depth.dtype, xp=jnp).reshape(-1, 2)
        depth = jnp.exp(log_depth)
        f = focals[idx][:, None]
        x = depth * (grid[None, :, 0] - pps[idx][:, 0, None]) / f
        y = depth * (grid[None, :, 1] - pps[idx][:, 1, None]) / f
        out.append(_rigid(jnp.stack((x, y, depth), axis=-2), cam2world[idx]))
    return out


def _aligned_and_residual(world, pred, pose):
    """Per coordinate r: world_r - (R pred + t)_r, world broadcast over the D pairs of each image."""
    x, y, z = pred[..., 0, :], pred[..., 1, :], pred[..., 2, :]
    return [world[:, None, r, :] - (pose[..., r, 0, None] * x + pose[..., r, 1, None] * y
                                    + pose[..., r, 2, None] * z + pose[..., r, 3, None]) for r in range(3)]


@jax.custom_vjp
def _l1_sum(world, pred, weight, pose):
    """sum over pairs and pixels of weight * ||world - (R pred + t)||.
    world (R, 3, HW); pred (R, D, 3, HW); weight (R, D, HW); pose (R, D, 4, 4)."""
    diff = _aligned_and_residual(world, pred, pose)
    return jnp.sum(weight * jnp.sqrt(diff[0] ** 2 + diff[1] ** 2 + diff[2] ** 2))


def _l1_fwd(world, pred, weight, pose):
    diff = _aligned_and_residual(world, pred, pose)
    norm = jnp.sqrt(diff[0] ** 2 + diff[1] ** 2 + diff[2] ** 2)
    return jnp.sum(weight * norm), (pred, weight, pose, jnp.stack(diff, axis=-2), norm)


def _l1_bwd(res, g):
    # Hand-written backward: the unit residual (times weight) is materialised once, then reduced
    # for each cotangent. Autodiff let XLA re-fuse the residual chain into each of the ~15
    # reductions (poses, world points), which made the backward ~10x slower than the forward.
    pred, weight, pose, diff, norm = res
    scale = jnp.where(norm > 0, g * weight / jnp.where(norm > 0, norm, 1.0), 0.0)  # zero grad at 0
    unit = jax.lax.optimization_barrier(diff * scale[..., None, :])                 # (R, D, 3, HW)
    d_world = jnp.sum(unit, axis=1)
    # aligned = R pred + t enters with a minus sign
    d_rot = -jnp.einsum("rdap,rdbp->rdab", unit, pred)                              # (R, D, 3, 3)
    d_t = -jnp.sum(unit, axis=-1)                                                  # (R, D, 3)
    d_pose = jnp.concatenate((jnp.concatenate((d_rot, d_t[..., None]), axis=-1),
                              jnp.zeros(pose.shape[:-2] + (1, 4), pose.dtype)), axis=-2)
    d_pred = -jnp.einsum("rdab,rdap->rdbp", pose[..., :3, :3], unit)
    return d_world, d_pred, g * norm, d_pose


_l1_sum.defvjp(_l1_fwd, _l1_bwd)


def _side_loss(world, pred, weight, pose, adapt, dist, per_pair_mean):
    """world (R, 3, HW); pred (R, D, 3, HW); weight (R, D, HW); pose (R, D, 4, 4); adapt (R, D, 3)
    or None (adaptors frozen at 1)."""
    if adapt is not None:
        pred = adapt[..., None] * pred
    if dist == "l1" and not per_pair_mean:
        return _l1_sum(world, pred, weight, pose)
    diff = _aligned_and_residual(world, pred, pose)
    sq = diff[0] ** 2 + diff[1] ** 2 + diff[2] ** 2
    if dist == "l1":
        pos = sq > 0  # zero (not NaN) gradient of the norm at 0
        d = jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)
    else:
        d = sq
    d = d * weight
    return jnp.sum(jnp.mean(d, axis=-1)) if per_pair_mean else jnp.sum(d)


def loss(params, prepared, layout):
    """Scalar alignment loss (see module docstring). params: see `params.py` (depth per image
    group); prepared: output of `prepare` (weights instead of confidences)."""
    pw = P.scaled_pw_poses(params["pw_poses"], layout.base_scale, layout.norm_pw_scale)
    adapt = P.adaptors(params["pw_adaptors"], layout.pw_break)
    world = world_points(layout, params)
    modular = layout.loss_mode == "modular"
    dtype = params["pw_poses"].dtype
    totals = {"i": jnp.zeros((), dtype), "j": jnp.zeros((), dtype)}
    for sg, d in zip(layout.side_groups, prepared):
        ids = np.asarray(sg.edge_ids)
        rows = _block_rows(layout, sg)
        n_rows = d["pred"].shape[0]
        ids = np.concatenate((ids, np.full((n_rows - len(ids), ids.shape[1]), -1)))
        safe_ids = jnp.asarray(np.maximum(ids, 0))
        wg = world[sg.group]
        if n_rows > wg.shape[0]:
            wg = jnp.concatenate((wg, jnp.zeros((n_rows - wg.shape[0],) + wg.shape[1:], wg.dtype)))

        def block(args):
            w_rows, e, pred, weight = args
            return _side_loss(w_rows, pred, weight, pw[e], adapt[e] if layout.pw_adaptors else None,
                              layout.dist, modular)

        inputs = (wg, safe_ids, d["pred"], d["w"])
        if rows:
            blocks = jax.tree.map(lambda x: x.reshape((-1, rows) + x.shape[1:]), inputs)
            remat_block = jax.checkpoint(block)

            def body(acc, args):
                return acc + remat_block(args), None
            value, _ = jax.lax.scan(body, jnp.zeros((), dtype), blocks)
        else:
            value = block(inputs)
        totals[sg.side] = totals[sg.side] + value
    if modular:
        return (totals["i"] + totals["j"]) / len(layout.edges)
    # (areas as floats: past 2^31 pixels, ~60,000 pairs at 512x384, a Python int overflows jit's int32)
    return totals["i"] / float(layout.total_area_i) + totals["j"] / float(layout.total_area_j)
