"""The alignment objective as a pure JAX function of (parameters, pair data).

Layout. Images are grouped by shape and pairs by (shape of i, shape of j); each group is stacked,
so nothing is padded to the largest image and memory grows with the pixels actually present.
`Layout` holds the static structure (hashable, a `jit` static argument); `pack_data` builds the
array pytree; `loss` evaluates

    sum_e sum_pix w_i ||X_world[i] - T_e(pred_i)|| / A_i  +  (same for j) / A_j      ("pointcloud")
    (1 / E) sum_e [mean_pix w_i ||...|| + mean_pix w_j ||...||]                      ("modular")

with T_e the scaled pair pose and A_i = sum over pairs of the pixel count of their first image.
With `edge_chunk`, each pair group is processed in blocks of that many pairs under `lax.scan`
with rematerialisation, so the memory of one evaluation (and its gradient) is bounded by a block.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dust3r_jax.geometry import xy_grid
from dust3r_jax.alignment import params as P


@dataclasses.dataclass(frozen=True)
class EdgeGroup:
    """Pairs whose first images share one shape and whose second images share one shape.
    edge_ids/slot_i/slot_j are padded with 0 up to a multiple of the chunk (padded pairs have
    zero weight); n_real is the number of real pairs."""
    edge_ids: tuple
    group_i: int
    slot_i: tuple
    group_j: int
    slot_j: tuple
    n_real: int


@dataclasses.dataclass(frozen=True)
class Layout:
    imshapes: tuple                 # (H, W) per image
    edges: tuple                    # (i, j) per pair
    image_groups: tuple             # ((H, W), (image indices...)) per shape group
    edge_groups: tuple              # EdgeGroup per (shape_i, shape_j)
    edge_chunk: int = 0             # 0: all pairs of a group at once
    loss_mode: str = "pointcloud"   # or "modular" (mean per pair, as the modular optimiser)
    dist: str = "l1"
    conf: str = "log"
    base_scale: float = 0.5
    pw_break: float = 20.0
    focal_break: float = 20.0
    norm_pw_scale: bool = True

    @property
    def n_imgs(self):
        return len(self.imshapes)

    def image_slot(self, n):
        for g, (_, members) in enumerate(self.image_groups):
            if n in members:
                return g, members.index(n)
        raise KeyError(n)

    @property
    def total_area_i(self):
        return sum(self.imshapes[i][0] * self.imshapes[i][1] for i, _ in self.edges)

    @property
    def total_area_j(self):
        return sum(self.imshapes[j][0] * self.imshapes[j][1] for _, j in self.edges)


def make_layout(imshapes, edges, edge_chunk=0, **options):
    """Group images by shape and pairs by shapes (first-seen order, pairs in input order)."""
    imshapes = tuple(tuple(int(s) for s in hw) for hw in imshapes)
    edges = tuple((int(i), int(j)) for i, j in edges)
    shapes = list(dict.fromkeys(imshapes))
    image_groups = tuple((hw, tuple(n for n, s in enumerate(imshapes) if s == hw)) for hw in shapes)
    slot = {}
    for g, (_, members) in enumerate(image_groups):
        for k, n in enumerate(members):
            slot[n] = (g, k)
    by_shapes = {}
    for e, (i, j) in enumerate(edges):
        by_shapes.setdefault((imshapes[i], imshapes[j]), []).append(e)
    groups = []
    for ids in by_shapes.values():
        n_real = len(ids)
        if edge_chunk:
            ids = ids + [ids[0]] * (-n_real % edge_chunk)
        gi = slot[edges[ids[0]][0]][0]
        gj = slot[edges[ids[0]][1]][0]
        groups.append(EdgeGroup(tuple(ids), gi, tuple(slot[edges[e][0]][1] for e in ids),
                                gj, tuple(slot[edges[e][1]][1] for e in ids), n_real))
    return Layout(imshapes, edges, image_groups, tuple(groups), int(edge_chunk or 0), **options)


def pack_data(layout, pred_i, pred_j, conf_i, conf_j):
    """Per-pair NumPy lists -> list over pair groups of {pred_i (Eg, HW_i, 3), pred_j (Eg, HW_j, 3),
    conf_i (Eg, HW_i), conf_j (Eg, HW_j)} float32 (padded pairs get confidence 0)."""
    data = []
    for grp in layout.edge_groups:
        def stack(items, e_ids, ndim_pt):
            arr = np.stack([np.asarray(items[e], np.float32).reshape(-1, 3) if ndim_pt else
                            np.asarray(items[e], np.float32).ravel() for e in e_ids])
            return arr
        ids = grp.edge_ids
        d = {"pred_i": stack(pred_i, ids, True), "pred_j": stack(pred_j, ids, True),
             "conf_i": stack(conf_i, ids, False), "conf_j": stack(conf_j, ids, False)}
        if grp.n_real < len(ids):
            d["conf_i"][grp.n_real:] = 0
            d["conf_j"][grp.n_real:] = 0
        data.append({k: jnp.asarray(v) for k, v in d.items()})
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
    return [{"pred_i": d["pred_i"], "pred_j": d["pred_j"],
             "w_i": conf_to_weight(d["conf_i"], layout.conf), "w_j": conf_to_weight(d["conf_j"], layout.conf)}
            for d in data]


def _norm(x):
    """Euclidean norm over the last axis with a zero (not NaN) gradient at 0."""
    sq = jnp.sum(jnp.square(x), axis=-1)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _rigid(pts, pose):
    """pts (K, P, 3) -> pose[:, :3, :3] pts + pose[:, :3, 3] for poses (K, 4, 4).
    Written as broadcast products (not a batched matmul): XLA fuses it into one elementwise
    loop, where a batch of tiny 3x3 matmuls is slow on CPU."""
    R = pose[:, None, :3, :3]
    return (pts[..., 0:1] * R[..., 0] + pts[..., 1:2] * R[..., 1] + pts[..., 2:3] * R[..., 2]
            + pose[:, None, :3, 3])


def world_points(layout, params):
    """Per image group (n_g, H_g * W_g, 3) world points of the current depth maps and cameras."""
    focals = P.focals_from_params(params["im_focals"], layout.focal_break)
    pps = P.principal_points(params["im_pp"], layout.imshapes)
    cam2world = P.decode_poses(params["im_poses"])
    out = []
    for ((H, W), members), log_depth in zip(layout.image_groups, params["depth"]):
        idx = np.asarray(members)
        grid = xy_grid(W, H, dtype=log_depth.dtype, xp=jnp).reshape(-1, 2)
        depth = jnp.exp(log_depth)[..., None]
        xy = depth * (grid[None] - pps[idx][:, None, :]) / focals[idx][:, None, None]
        rel = jnp.concatenate((xy, depth), axis=-1)
        out.append(_rigid(rel, cam2world[idx]))
    return out


def _side(world, slots, pred, weight, pose, adapt, dist, per_pair_mean):
    X = world[slots]                                                    # (C, HW, 3)
    aligned = _rigid(adapt[:, None, :] * pred, pose)
    diff = X - aligned
    d = _norm(diff) if dist == "l1" else jnp.sum(jnp.square(diff), axis=-1)
    d = d * weight
    return jnp.sum(jnp.mean(d, axis=1)) if per_pair_mean else jnp.sum(d)


def loss(params, prepared, layout):
    """Scalar alignment loss (see module docstring). params: see `params.py` (depth per image
    group); prepared: output of `prepare` (weights instead of confidences)."""
    pw = P.scaled_pw_poses(params["pw_poses"], layout.base_scale, layout.norm_pw_scale)
    adapt = P.adaptors(params["pw_adaptors"], layout.pw_break)
    world = world_points(layout, params)
    modular = layout.loss_mode == "modular"
    total_i = jnp.zeros((), jnp.float32)
    total_j = jnp.zeros((), jnp.float32)
    for grp, d in zip(layout.edge_groups, prepared):
        ids = np.asarray(grp.edge_ids)
        inputs = (jnp.asarray(ids), jnp.asarray(np.asarray(grp.slot_i)), jnp.asarray(np.asarray(grp.slot_j)),
                  d["pred_i"], d["w_i"], d["pred_j"], d["w_j"])
        wi, wj = world[grp.group_i], world[grp.group_j]

        def block(args, wi=wi, wj=wj):
            e, si, sj, pi, w_i, pj, w_j = args
            li = _side(wi, si, pi, w_i, pw[e], adapt[e], layout.dist, modular)
            lj = _side(wj, sj, pj, w_j, pw[e], adapt[e], layout.dist, modular)
            return li, lj

        chunk = layout.edge_chunk
        if chunk and len(ids) > chunk:
            blocks = jax.tree.map(lambda x: x.reshape((-1, chunk) + x.shape[1:]), inputs)
            remat_block = jax.checkpoint(block)

            def body(acc, args):
                li, lj = remat_block(args)
                return (acc[0] + li, acc[1] + lj), None
            (li, lj), _ = jax.lax.scan(body, (jnp.zeros(()), jnp.zeros(())), blocks)
        else:
            li, lj = block(inputs)
        total_i, total_j = total_i + li, total_j + lj
    if modular:
        return (total_i + total_j) / len(layout.edges)
    return total_i / layout.total_area_i + total_j / layout.total_area_j
