"""Training and test criteria of DUSt3R as pure functions of arrays.

Two entry points mirror the official criterion strings:

* `conf_regr3d_loss`  = `ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)` (training)
* `regr3d_scale_shift_inv_loss` = `Regr3D_ScaleShiftInv(L21, gt_scale=True)` (test)

and `regr3d_loss` = `Regr3D(L21, norm_mode=...)`. Each returns `(loss, details)` where `details`
uses the official key spelling (note `conf_loss_1` but `conf_loss2`).

Conventions. A ground-truth view is a dict with `pts3d (B, H, W, 3)` world points, `camera_pose
(B, 4, 4)` cam2world and `valid_mask (B, H, W)` bool. Predictions are what the model returns:
`pred1["pts3d"] (B, H, W, 3)` in view 1's camera frame, `pred2["pts3d_in_other_view"]` view 2's
pixels in view 1's camera frame, `conf (B, H, W)`. Everything runs in float32 whatever the model's
compute dtype (the official loss runs outside autocast).

Masked selections (`x[mask]` in PyTorch) become masked sums with static shapes so that the losses
jit; a mean over an empty selection is 0, as in the official code. `torch.nanmedian` picks the
lower middle value for an even count; `_masked_lower_median` reproduces that.
"""
import ast
import functools

import jax
import jax.numpy as jnp

from dust3r_jax import literal
from dust3r_jax.errors import ConfigError

_HIGHEST = jax.lax.Precision.HIGHEST

NORM_MODES = ("avg_dis", "avg_log1p", "avg_warp-log1p", "median_dis", "sqrt_dis")


# ----------------------------------------------------------------------------------------------
# Geometry and masked reductions


def _safe_norm(x, mask=None):
    """Euclidean norm over the last axis, with a zero (not NaN) gradient at 0.

    x: (..., 3); mask: (...) bool or None. Masked-out entries are 0 and get no gradient; NaN
    inputs in unmasked entries stay NaN, as in PyTorch (a NaN ground truth must not vanish).
    """
    sq = jnp.sum(x * x, axis=-1)
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), sq)  # sq: 0 or NaN
    return norm if mask is None else jnp.where(mask, norm, 0.0)


def _to_camera1(cam2world1, pts3d_world):
    """World points (B, H, W, 3) -> view 1's camera frame, through the inverse of cam2world1 (B, 4, 4)."""
    world2cam1 = jnp.linalg.inv(cam2world1.astype(jnp.float32))
    rot = jnp.einsum("bij,bhwj->bhwi", world2cam1[:, :3, :3], pts3d_world, precision=_HIGHEST)
    return rot + world2cam1[:, None, None, :3, 3]


def _masked_mean(values, mask):
    """Mean of `values` over True entries of `mask` (same shape); 0 when there are none."""
    count = jnp.sum(mask)
    total = jnp.sum(jnp.where(mask, values, 0.0))
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


def _masked_lower_median(values, mask, axis):
    """`torch.nanmedian` along `axis` where invalid entries are NaN: the lower middle valid value.

    values, mask: same shape. Rows without any valid entry give NaN (as torch does).
    """
    mask = mask & ~jnp.isnan(values)  # NaN counts as missing, like torch.nanmedian
    filled = jnp.where(mask, values, jnp.inf)
    ordered = jnp.sort(filled, axis=axis)
    count = jnp.sum(mask, axis=axis, keepdims=True)
    middle = jnp.maximum(count - 1, 0) // 2
    median = jnp.take_along_axis(ordered, middle, axis=axis)
    median = jnp.where(count > 0, median, jnp.nan)
    return jnp.squeeze(median, axis=axis)


def _flat_pixels(x):
    """(B, H, W, ...) -> (B, H*W, ...)."""
    return x.reshape((x.shape[0], -1) + x.shape[3:])


# ----------------------------------------------------------------------------------------------
# Normalisation of a pair of pointmaps


def normalize_pointcloud(pts1, pts2, norm_mode, valid1, valid2):
    """Divide both views' points by one per-sample scale (official `normalize_pointcloud`).

    pts1, pts2: (B, H, W, 3) in the same frame; valid1, valid2: (B, H, W) bool.
    norm_mode: '<norm>_<dis>' with norm in {avg, median, sqrt} and dis in {dis, log1p, warp-log1p}
    (dis only matters for 'avg'). Returns the two normalised arrays, same shapes.
    """
    if "_" not in norm_mode:
        raise ValueError(f"norm_mode {norm_mode!r}: expected '<avg|median|sqrt>_<dis|log1p|warp-log1p>'")
    norm, dis_mode = norm_mode.split("_", 1)
    batch = pts1.shape[0]
    n1 = pts1.shape[1] * pts1.shape[2]
    all_valid = jnp.concatenate([_flat_pixels(valid1), _flat_pixels(valid2)], axis=1)
    all_pts = jnp.concatenate([_flat_pixels(pts1), _flat_pixels(pts2)], axis=1)
    if norm == "avg":
        # invalid points count as zeros in the sum, valid ones are counted in the denominator
        all_dis = _safe_norm(all_pts, all_valid)
        if dis_mode == "dis":
            pass
        elif dis_mode == "log1p":
            all_dis = jnp.log1p(all_dis)
        elif dis_mode == "warp-log1p":
            # the points themselves are warped so that their norm becomes log1p(norm)
            log_dis = jnp.log1p(all_dis)
            warp = log_dis / jnp.maximum(all_dis, 1e-8)
            pts1 = pts1 * warp[:, :n1].reshape(pts1.shape[:3] + (1,))
            pts2 = pts2 * warp[:, n1:].reshape(pts2.shape[:3] + (1,))
            all_dis = log_dis
        else:
            raise ValueError(f"norm_mode {norm_mode!r}: unknown distance mode {dis_mode!r}")
        n_valid = jnp.sum(all_valid, axis=1).astype(jnp.float32)
        norm_factor = jnp.sum(all_dis, axis=1) / (n_valid + 1e-8)
    elif norm in ("median", "sqrt"):
        all_dis = _safe_norm(all_pts, all_valid)
        if norm == "median":
            norm_factor = jax.lax.stop_gradient(_masked_lower_median(all_dis, all_valid, axis=1))
        else:
            n_valid = jnp.sum(all_valid, axis=1)
            sqrt_dis = jnp.sqrt(jnp.where(all_valid, all_dis, 1.0))  # where first: no inf gradient at 0
            mean_sqrt = jnp.sum(jnp.where(all_valid, sqrt_dis, 0.0), axis=1) / n_valid
            norm_factor = mean_sqrt**2
    else:
        raise ValueError(f"norm_mode {norm_mode!r}: unknown normalisation {norm!r}")
    norm_factor = jnp.maximum(norm_factor, 1e-8).reshape(batch, 1, 1, 1)
    return pts1 / norm_factor, pts2 / norm_factor


# ----------------------------------------------------------------------------------------------
# Regr3D and its shift/scale-invariant variant


def regr3d_points(gt1, gt2, pred1, pred2, norm_mode="avg_dis", gt_scale=False, dist_clip=None):
    """Official `Regr3D.get_all_pts3d`: GT and predictions of both views in view 1's camera.

    Returns (gt_pts1, gt_pts2, pred_pts1, pred_pts2, valid1, valid2), points (B, H, W, 3) and
    masks (B, H, W). Predictions are normalised by `norm_mode` (None or '' = not at all); GT too
    unless `gt_scale`.
    """
    gt_pts1 = _to_camera1(gt1["camera_pose"], gt1["pts3d"].astype(jnp.float32))
    gt_pts2 = _to_camera1(gt1["camera_pose"], gt2["pts3d"].astype(jnp.float32))
    valid1 = gt1["valid_mask"].astype(bool)
    valid2 = gt2["valid_mask"].astype(bool)
    if dist_clip is not None:  # points too far away count as invalid
        valid1 = valid1 & (_safe_norm(gt_pts1) <= dist_clip)
        valid2 = valid2 & (_safe_norm(gt_pts2) <= dist_clip)
    pred_pts1 = pred1["pts3d"].astype(jnp.float32)
    pred_pts2 = pred2["pts3d_in_other_view"].astype(jnp.float32)
    if norm_mode:
        pred_pts1, pred_pts2 = normalize_pointcloud(pred_pts1, pred_pts2, norm_mode, valid1, valid2)
        if not gt_scale:
            gt_pts1, gt_pts2 = normalize_pointcloud(gt_pts1, gt_pts2, norm_mode, valid1, valid2)
    return gt_pts1, gt_pts2, pred_pts1, pred_pts2, valid1, valid2


def _joint_median_depth(z1, z2, valid1, valid2):
    """Per-sample lower median of z over the valid pixels of both views: (B, H, W) x2 -> (B,)."""
    z = jnp.concatenate([_flat_pixels(z1), _flat_pixels(z2)], axis=1)
    valid = jnp.concatenate([_flat_pixels(valid1), _flat_pixels(valid2)], axis=1)
    return _masked_lower_median(z, valid, axis=1)


def _joint_center_scale(pts1, pts2, valid1, valid2):
    """Per-sample scale: lower median distance to the per-axis lower-median centre. -> (B,)."""
    pts = jnp.concatenate([_flat_pixels(pts1), _flat_pixels(pts2)], axis=1)  # (B, N, 3)
    valid = jnp.concatenate([_flat_pixels(valid1), _flat_pixels(valid2)], axis=1)  # (B, N)
    center = _masked_lower_median(pts, jnp.broadcast_to(valid[..., None], pts.shape), axis=1)
    dist = _safe_norm(pts - center[:, None, :], valid)
    return _masked_lower_median(dist, valid, axis=1)


def _shift_scale_invariant_points(gt1, gt2, pred1, pred2, gt_scale):
    """Official `Regr3D_ScaleShiftInv.get_all_pts3d`: Regr3D points, then shift z, then scale."""
    gt_pts1, gt_pts2, pred_pts1, pred_pts2, valid1, valid2 = regr3d_points(
        gt1, gt2, pred1, pred2, norm_mode="avg_dis", gt_scale=gt_scale)

    def shift_z(p1, p2):
        shift = _joint_median_depth(p1[..., 2], p2[..., 2], valid1, valid2)[:, None, None]
        return p1.at[..., 2].add(-shift), p2.at[..., 2].add(-shift)

    gt_pts1, gt_pts2 = shift_z(gt_pts1, gt_pts2)
    pred_pts1, pred_pts2 = shift_z(pred_pts1, pred_pts2)

    gt_s = _joint_center_scale(gt_pts1, gt_pts2, valid1, valid2).reshape(-1, 1, 1, 1)
    pred_s = _joint_center_scale(pred_pts1, pred_pts2, valid1, valid2).reshape(-1, 1, 1, 1)
    pred_s = jnp.clip(pred_s, 1e-3, 1e3)  # keep predictions in a sane range
    if gt_scale:
        pred_pts1 = pred_pts1 * (gt_s / pred_s)
        pred_pts2 = pred_pts2 * (gt_s / pred_s)
    else:
        gt_pts1, gt_pts2 = gt_pts1 / gt_s, gt_pts2 / gt_s
        pred_pts1, pred_pts2 = pred_pts1 / pred_s, pred_pts2 / pred_s
    return gt_pts1, gt_pts2, pred_pts1, pred_pts2, valid1, valid2


def _pixel_l21(points, name):
    """Per-pixel L21 distances and the official details of a criterion named `name`.

    Returns ((dist1, valid1), (dist2, valid2)), details; dist (B, H, W) is 0 outside valid.
    """
    gt_pts1, gt_pts2, pred_pts1, pred_pts2, valid1, valid2 = points
    dist1 = _safe_norm(pred_pts1 - gt_pts1, valid1)
    dist2 = _safe_norm(pred_pts2 - gt_pts2, valid2)
    details = {f"{name}_pts3d_1": _masked_mean(dist1, valid1),
               f"{name}_pts3d_2": _masked_mean(dist2, valid2)}
    return ((dist1, valid1), (dist2, valid2)), details


def regr3d_pixel_losses(gt1, gt2, pred1, pred2, norm_mode="avg_dis", gt_scale=False, dist_clip=None):
    """`Regr3D(L21, ...).with_reduction('none')`: ((dist1, valid1), (dist2, valid2)), details.

    dist: (B, H, W) Euclidean distance per pixel (0 where not valid); valid: (B, H, W) bool.
    """
    points = regr3d_points(gt1, gt2, pred1, pred2, norm_mode, gt_scale, dist_clip)
    return _pixel_l21(points, "Regr3D")


def regr3d_loss(gt1, gt2, pred1, pred2, norm_mode="avg_dis", gt_scale=False, dist_clip=None):
    """`Regr3D(L21, norm_mode)`: mean distance over valid pixels of view 1, plus that of view 2."""
    (_, _), details = regr3d_pixel_losses(gt1, gt2, pred1, pred2, norm_mode, gt_scale, dist_clip)
    return details["Regr3D_pts3d_1"] + details["Regr3D_pts3d_2"], details


def regr3d_scale_shift_inv_loss(gt1, gt2, pred1, pred2, gt_scale=True):
    """Test criterion `Regr3D_ScaleShiftInv(L21, gt_scale=True)` -> (loss, details).

    Predictions are normalised by avg_dis, both clouds shifted by their joint median depth, then
    the prediction rescaled to the GT's median distance to its median centre (gt_scale=True) or
    both divided by their own (gt_scale=False).
    """
    points = _shift_scale_invariant_points(gt1, gt2, pred1, pred2, gt_scale)
    (_, _), details = _pixel_l21(points, "Regr3D_ScaleShiftInv")
    name = "Regr3D_ScaleShiftInv"
    return details[f"{name}_pts3d_1"] + details[f"{name}_pts3d_2"], details


def conf_regr3d_loss(gt1, gt2, pred1, pred2, alpha=0.2, norm_mode="avg_dis"):
    """Training criterion `ConfLoss(Regr3D(L21, norm_mode), alpha)` -> (loss, details).

    Per valid pixel `dist * conf - alpha * log(conf)`, averaged over the valid pixels of the batch,
    view 1 plus view 2. details: conf_loss_1, conf_loss2, Regr3D_pts3d_1, Regr3D_pts3d_2.
    """
    if not alpha > 0:
        raise ValueError(f"ConfLoss alpha must be > 0, got {alpha}")
    ((dist1, valid1), (dist2, valid2)), details = regr3d_pixel_losses(gt1, gt2, pred1, pred2, norm_mode)
    conf1 = pred1["conf"].astype(jnp.float32)
    conf2 = pred2["conf"].astype(jnp.float32)
    # log only where valid: conf outside the mask may be anything and must not poison gradients
    log_conf1 = jnp.log(jnp.where(valid1, conf1, 1.0))
    log_conf2 = jnp.log(jnp.where(valid2, conf2, 1.0))
    conf_loss_1 = _masked_mean(dist1 * conf1 - alpha * log_conf1, valid1)
    conf_loss_2 = _masked_mean(dist2 * conf2 - alpha * log_conf2, valid2)
    details = {"conf_loss_1": conf_loss_1, "conf_loss2": conf_loss_2, **details}
    return conf_loss_1 + conf_loss_2, details


# ----------------------------------------------------------------------------------------------
# Official criterion strings (as written in configs and in the official training commands)


def _criterion_call(node, where):
    """`Name` or `Name(args, kw=literal)` -> (name, [args as nested calls], {kw: value})."""
    if isinstance(node, ast.Name):
        return node.id, [], {}
    name, args, kwargs = literal.call(node, where)
    return name, [_criterion_call(arg, where) for arg in args], kwargs


def criterion_from_string(text):
    """Official criterion string -> `fn(gt1, gt2, pred1, pred2) -> (loss, details)`.

    Understood: `ConfLoss(Regr3D(L21, norm_mode=..., dist_clip=...), alpha=...)`,
    `Regr3D(L21, norm_mode=..., gt_scale=...)`, `Regr3D_ScaleShiftInv(L21, gt_scale=...)`.
    Parsed by `dust3r_jax.literal`, never `eval`; a string it does not understand raises ConfigError.
    """
    where = f"criterion {text!r}"
    name, args, kwargs = _criterion_call(literal.parse(text, where), where)

    def pixel_criterion(call):
        pname, pargs, pkw = call
        if pargs and pargs[0][0] != "L21":
            raise ConfigError(f"{where}: only the L21 distance is implemented")
        return pname, pkw

    if name == "ConfLoss":
        if len(args) != 1:
            raise ConfigError(f"{where}: ConfLoss takes one pixel criterion")
        inner, inner_kw = pixel_criterion(args[0])
        if inner != "Regr3D" or set(inner_kw) - {"norm_mode"}:
            raise ConfigError(f"{where}: ConfLoss is implemented over Regr3D(L21, norm_mode=...)")
        return functools.partial(conf_regr3d_loss, alpha=kwargs.get("alpha", 1.0),
                                 norm_mode=inner_kw.get("norm_mode", "avg_dis"))
    pname, pkw = pixel_criterion((name, args, kwargs))
    if pname == "Regr3D":
        return functools.partial(regr3d_loss, **pkw)
    if pname == "Regr3D_ScaleShiftInv":
        if set(pkw) - {"gt_scale"}:
            raise ConfigError(f"{where}: Regr3D_ScaleShiftInv takes only gt_scale")
        return functools.partial(regr3d_scale_shift_inv_loss, **pkw)
    raise ConfigError(f"{where}: unknown criterion {pname!r}")
