"""The data of MASt3R's sparse alignment, flattened for a jitted optimiser (what the official
mast3r/cloud_opt/sparse_ga.py prepare_canonical_data and condense_data gather, and the slices that
sparse_scene_optimizer builds for its losses).

Every matched pixel of every image becomes one 3D point: its anchor's depth (a parameter) times the
pixel's fixed depth ratio, back-projected through its camera. The official code keeps these per
image and per pair in lists of slices; here they are one array of points, and each loss is a list
of indices into it:

  * loss3d: pairs (a, b) of points that a correspondence says are the same (pairs whose best
    correspondence confidence exceeds matching_conf_thr);
  * loss2d: a pixel of image i and the point of its correspondent in image j, reprojected into i;
  * dust3r: for pairs whose matching is not trusted, an image's points against the network's
    prediction of them in the other camera's frame (the official fallback).
"""
import dataclasses

import numpy as np

from dust3r_jax.mast3r.canonical import anchor_depth_offsets, anchor_grid, canonical_focal, canonical_view

__all__ = ["SparseProblem", "build_sparse_problem"]


@dataclasses.dataclass(frozen=True)
class SparseProblem:
    """Constants of one alignment (NumPy). N images, A anchors, P points.

    imsizes (N, 2) (W, H); base_focals (N,) focal estimates of the canonical views (pixels);
    median_depths (N,) lower median of each image's anchor depths; core_depth (A,) anchor depths
    divided by their image's median; anchor_img (A,) image of each anchor; grid_start (N + 1,).
    pt_img, pt_uv (P, 2) pixel (x, y), pt_anchor (P,) index into core_depth, pt_offset (P,) depth
    ratio to the anchor; pt_start (N + 1,) first point of each image.
    l3_a, l3_b, l3_conf; l2_cam, l2_uv, l2_pt, l2_conf; ld_pt, ld_cam, ld_tgt (L, 3) points in
    ld_cam's frame, ld_conf: the three losses (see the module docstring).
    canon2, canon_conf: per image (H, W) depth ratios and confidences of the canonical views.
    scores (N, N) correspondence counts of the pairs.
    """
    imsizes: np.ndarray
    base_focals: np.ndarray
    median_depths: np.ndarray
    core_depth: np.ndarray
    anchor_img: np.ndarray
    grid_start: np.ndarray
    pt_img: np.ndarray
    pt_uv: np.ndarray
    pt_anchor: np.ndarray
    pt_offset: np.ndarray
    pt_start: np.ndarray
    l3_a: np.ndarray
    l3_b: np.ndarray
    l3_conf: np.ndarray
    l2_cam: np.ndarray
    l2_uv: np.ndarray
    l2_pt: np.ndarray
    l2_conf: np.ndarray
    ld_pt: np.ndarray
    ld_cam: np.ndarray
    ld_tgt: np.ndarray
    ld_conf: np.ndarray
    canon2: list
    canon_conf: list
    scores: np.ndarray

    @property
    def n_imgs(self):
        return len(self.imsizes)

    def device_arrays(self):
        """The arrays the optimiser reads, by name."""
        names = ("imsizes", "base_focals", "median_depths", "anchor_img", "pt_img", "pt_uv", "pt_anchor",
                 "pt_offset", "l3_a", "l3_b", "l3_conf", "l2_cam", "l2_uv", "l2_pt", "l2_conf", "ld_pt",
                 "ld_cam", "ld_tgt", "ld_conf")
        return {name: getattr(self, name) for name in names}


def _lower_median(x):
    """torch.median: the lower of the two middle values for an even count."""
    x = np.sort(np.ravel(x))
    return x[(len(x) - 1) // 2]


def build_sparse_problem(shapes, pairs, directed, corres, subsample, matching_conf_thr):
    """Gather the alignment's constants.

    shapes: (H, W) per image; pairs: {(i, j): (res11, res21, res22, res12)} one entry per unordered
    pair, in the order given; directed: the pairs (a, b) as the caller listed them (both orders of a
    pair when symmetrised, which the official dust3r fallback loss counts separately);
    corres: {(i, j): (score, (xy_i (K, 2), xy_j (K, 2), conf (K,)))} for the keys of `pairs`.
    """
    n = len(shapes)
    s = subsample
    scores = np.zeros((n, n), np.float32)
    own_maps = [[] for _ in range(n)]      # (pts3d, conf) of each image in its own frame
    partners = [dict() for _ in range(n)]  # partner -> (xy of this image, conf), in order of first listing
    preds_in = {}                          # (a, b) -> (pts3d, conf) of image a in b's frame
    for a, b in directed:
        i, j = (a, b) if (a, b) in pairs else (b, a)
        res11, res21, res22, res12 = pairs[i, j]
        (_, _, count), (xy_i, xy_j, conf) = corres[i, j]
        scores[i, j] = scores[j, i] = count
        for img, other, xy in ((i, j, xy_i), (j, i, xy_j)):
            if other not in partners[img]:
                partners[img][other] = (np.asarray(xy, np.int64), np.asarray(conf, np.float32))
        if (i, j) not in preds_in:
            own_maps[i].append((res11["pts3d"], res11["conf"]))
            own_maps[j].append((res22["pts3d"], res22["conf"]))
            preds_in[i, j] = (res12["pts3d"], res12["conf"])  # image i in j's frame
            preds_in[j, i] = (res21["pts3d"], res21["conf"])

    base_focals, median_depths, core_depth, canon2s, canon_confs = [], [], [], [], []
    pt_uv, pt_img, pt_anchor, pt_offset, slices = [], [], [], [], [{} for _ in range(n)]
    grid_start, pt_start = [0], [0]
    for img in range(n):
        maps = np.stack([np.asarray(m[0], np.float32) for m in own_maps[img]])
        confs = np.stack([np.asarray(m[1], np.float32) for m in own_maps[img]])
        canon, canon2, cconf = canonical_view(maps, confs, s)
        base_focals.append(canonical_focal(canon))
        rows, cols = anchor_grid(shapes[img], s)
        anchors = canon[rows[:, None], cols[None, :], 2].ravel()
        median_depths.append(_lower_median(anchors))
        core_depth.append(anchors / median_depths[-1])
        canon2s.append(canon2)
        canon_confs.append(cconf)
        start = pt_start[-1]
        for other, (xy, _) in partners[img].items():
            idx, offset = anchor_depth_offsets(canon2, xy, s)
            slices[img][other] = np.arange(start, start + len(xy))
            start += len(xy)
            pt_uv.append(xy.astype(np.float32))
            pt_anchor.append(idx + grid_start[-1])
            pt_offset.append(offset)
            pt_img.append(np.full(len(xy), img, np.int32))
        pt_start.append(start)
        grid_start.append(grid_start[-1] + len(anchors))

    def cat(arrays, dtype, shape=(0,)):
        return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(shape, dtype)

    pt_uv_all, pt_anchor_all = cat(pt_uv, np.float32, (0, 2)), cat(pt_anchor, np.int32)
    l3, l2, ld = ([], [], []), ([], [], [], []), ([], [], [], [])
    trusted = set()  # pairs whose best correspondence is confident enough for the matching losses
    for (i, j) in pairs:
        conf = np.sqrt(partners[i][j][1] * partners[j][i][1])
        if not (len(conf) and conf.max() > matching_conf_thr):
            continue
        trusted |= {(i, j), (j, i)}
        for lst, value in zip(l3, (slices[i][j], slices[j][i], conf)):
            lst.append(value)
        for cam, other in ((i, j), (j, i)):
            for lst, value in zip(l2, (np.full(len(conf), cam), pt_uv_all[slices[cam][other]],
                                       slices[other][cam], conf)):
                lst.append(value)
    for a, b in directed:  # the official fallback: a's points against their prediction in b's frame
        if (a, b) in trusted:
            continue
        pts, conf = preds_in[a, b]
        own = np.arange(pt_start[a], pt_start[a + 1])
        idx = pt_anchor_all[own] - grid_start[a]
        for lst, value in zip(ld, (own, np.full(len(own), b),
                                   np.asarray(pts, np.float32)[::s, ::s].reshape(-1, 3)[idx],
                                   np.asarray(conf, np.float32)[::s, ::s].ravel()[idx])):
            lst.append(value)

    return SparseProblem(
        imsizes=np.array([(W, H) for H, W in shapes], np.int32),
        base_focals=np.array(base_focals, np.float32),
        median_depths=np.array(median_depths, np.float32),
        core_depth=cat(core_depth, np.float32),
        anchor_img=np.repeat(np.arange(n, dtype=np.int32), np.diff(grid_start)),
        grid_start=np.array(grid_start), pt_img=cat(pt_img, np.int32), pt_uv=pt_uv_all,
        pt_anchor=pt_anchor_all, pt_offset=cat(pt_offset, np.float32), pt_start=np.array(pt_start),
        l3_a=cat(l3[0], np.int32), l3_b=cat(l3[1], np.int32), l3_conf=cat(l3[2], np.float32),
        l2_cam=cat(l2[0], np.int32), l2_uv=cat(l2[1], np.float32, (0, 2)), l2_pt=cat(l2[2], np.int32),
        l2_conf=cat(l2[3], np.float32), ld_pt=cat(ld[0], np.int32), ld_cam=cat(ld[1], np.int32),
        ld_tgt=cat(ld[2], np.float32, (0, 3)), ld_conf=cat(ld[3], np.float32),
        canon2=canon2s, canon_conf=canon_confs, scores=scores)
