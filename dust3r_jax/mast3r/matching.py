"""MASt3R's dense matching: fast reciprocal nearest neighbours of descriptor maps (mast3r/fast_nn.py)
and the correspondences of a pair (mast3r/cloud_opt/sparse_ga.py extract_correspondences).

    xy1, xy2 = fast_reciprocal_NNs(desc1, desc2, subsample_or_initxy1=8, dist='dot')
    xy1, xy2, conf = extract_correspondences((d11, d21, d22, d12), (q11, q21, q22, q12), subsample=8)

The walk is the official one, on the host: start from a grid of pixels of image 1 (every
`subsample` pixels from subsample // 2), send each to its nearest neighbour in image 2 and back,
up to 10 times; a pixel is matched once it comes back to where it was (a reciprocal pair).
The nearest-neighbour searches are brute force on the host BLAS (`nearest_neighbours`): exact, the
first of equal scores as torch's blocked argmax. They run only for pixels not yet converged, and each distinct pixel once: the walk sends
many pixels to the same one and the two directions ask the same questions (1.4x to 4x fewer
searches than the official loop, same answers). 'dot' is the similarity of unit descriptors
(highest wins), 'l2' the Euclidean distance; without `dist`, the official CPU path: a scipy KD-tree
(what it uses for 3D points). A search costs Q x H W x D multiply-adds (29 GFLOP for the 3072 grid
pixels of a 512x384 image): the time is that of the first round on the CPU.
"""
import functools

import numpy as np
from scipy.spatial import KDTree

from dust3r_jax.errors import InputError

__all__ = ["fast_reciprocal_NNs", "extract_correspondences", "merge_corres", "nearest_neighbours", "pair_correspondences"]

MAX_ITER = 10        # rounds of the walk from a subsampled grid (official)
_SCORES = 1 << 23   # query x database scores computed at once (32 MB of float32)


def nearest_neighbours(queries, db, dist="dot"):
    """queries: (Q, D), db: (N, D) arrays (numpy or jax). Returns (Q,) int64 numpy indices into db
    of each query's nearest neighbour: the highest dot product ('dot') or the smallest Euclidean
    distance ('l2', scored as 2 q.b - |q|^2 - |b|^2); ties go to the lowest index, as torch's blocked
    argmax. Brute force on the host BLAS, queries in blocks of at most _SCORES score entries: the
    matmul has only D = 24 terms per score, so the time is writing and scanning the score block,
    which XLA:CPU does 4-16x slower than numpy's BLAS + argmax on the project's CPU (and
    without compilations per shape)."""
    queries = np.asarray(queries, np.float32)
    db = np.asarray(db, np.float32)
    out = np.zeros(len(queries), np.int64)
    if len(queries) == 0 or len(db) == 0:
        return out
    db_sq = np.sum(db * db, axis=1) if dist == "l2" else None
    step = max(1, _SCORES // len(db))
    for start in range(0, len(queries), step):
        block = queries[start:start + step]
        score = block @ db.T  # the transposed view: BLAS reads db row-major, faster than a (D, N) copy
        if dist == "l2":  # -|q - b|^2 up to rounding, so that the highest score wins in both cases
            score *= 2
            score -= np.sum(block * block, axis=1, keepdims=True)
            score -= db_sq[None]
        out[start:start + step] = np.argmax(score, axis=1)
    return out


class _Searcher:
    """Nearest neighbour in `db` (H2, W2, D) of pixels of `queries` (H1, W1, D), by `dist` or a
    KD-tree. Pixels are asked for by flat index; each distinct pixel is searched once and its
    answer kept: the walk sends many pixels to the same one and revisits pixels, and the two
    directions of `extract_correspondences` ask the same questions."""

    def __init__(self, queries, db, dist, workers=1):
        self.dist, self.workers = dist, workers
        self.queries = queries.reshape(-1, queries.shape[-1])
        db = db.reshape(-1, db.shape[-1])
        self.db = KDTree(db) if dist is None else np.ascontiguousarray(db, np.float32)
        self.known = np.full(len(self.queries), -1, np.int64)  # -1: not searched yet

    def __call__(self, pixels):
        """pixels (Q,) int flat indices into `queries` -> (Q,) int64 flat indices into `db`."""
        todo = np.unique(pixels[self.known[pixels] < 0])
        if len(todo):
            if self.dist is None:
                self.known[todo] = self.db.query(self.queries[todo], workers=self.workers)[1]
            else:
                self.known[todo] = nearest_neighbours(self.queries[todo], self.db, self.dist)
        return self.known[pixels]


def merge_corres(idx1, idx2, shape1=None, shape2=None, ret_xy=True, ret_index=False):
    """Unique pairs of flat pixel indices (idx1, idx2: (M,) int32), sorted by idx1 then idx2.

    ret_xy: pixel (x, y) int arrays (K, 2) of the two images (shapes (H, W)) instead of flat
    indices; ret_xy='y_x': (rows, cols) tuples. ret_index: also the index in the input of each
    pair's first occurrence."""
    idx1, idx2 = np.asarray(idx1), np.asarray(idx2)
    if idx1.dtype != np.int32 or idx2.dtype != np.int32:
        raise InputError(f"merge_corres takes int32 indices; got {idx1.dtype} and {idx2.dtype}")
    keys = (idx1.astype(np.int64) << 32) | idx2.astype(np.int64)
    keys, first = np.unique(keys, return_index=True)
    xy1, xy2 = (keys >> 32).astype(np.int32), (keys & 0xFFFFFFFF).astype(np.int32)
    if ret_xy:
        if not (shape1 and shape2):
            raise InputError("merge_corres: ret_xy needs shape1 and shape2")
        rows1, cols1 = np.unravel_index(xy1, shape1)
        rows2, cols2 = np.unravel_index(xy2, shape2)
        if ret_xy == "y_x":
            xy1, xy2 = (rows1, cols1), (rows2, cols2)
        else:
            xy1, xy2 = np.stack([cols1, rows1], axis=1), np.stack([cols2, rows2], axis=1)
    return (xy1, xy2, first) if ret_index else (xy1, xy2)


def fast_reciprocal_NNs(pts1, pts2, subsample_or_initxy1=8, ret_xy=True, pixel_tol=0, ret_basin=False,
                        device=None, **matcher_kw):
    """Reciprocal nearest neighbours between two maps, as the official mast3r.fast_nn function.

    pts1: (H1, W1, D), pts2: (H2, W2, D) descriptors (or 3D points) per pixel.
    subsample_or_initxy1: an int S (start from the grid y = S//2, S//2 + S, ..., x likewise, and
      walk up to 10 rounds) or (x1, y1) integer arrays of starting pixels (one round).
    pixel_tol: > 0: a start pixel is kept if the walk ends within pixel_tol of it.
    matcher_kw: dist='dot' | 'l2' (brute force) or none (a KD-tree); block_size and
      workers are accepted as the official takes them (results do not depend on them).
    Returns (xy1 (M, 2), xy2 (M, 2)) pixel (x, y) of the matches, sorted by pixel of image 1
    (flat int32 indices if ret_xy=False), and with ret_basin the (H1 W1 + 1,) int32 basin map.
    """
    del device  # JAX places the arrays
    pts1, pts2 = np.asarray(pts1, np.float32), np.asarray(pts2, np.float32)
    _check_maps(pts1, pts2)
    dist, workers = _matcher_options(matcher_kw)
    return _walk(_Searcher(pts1, pts2, dist, workers), _Searcher(pts2, pts1, dist, workers), pts1.shape[:2],
                 pts2.shape[:2], subsample_or_initxy1, ret_xy, pixel_tol, ret_basin)


def _check_maps(pts1, pts2):
    if pts1.ndim != 3 or pts2.ndim != 3 or pts1.shape[2] != pts2.shape[2]:
        raise InputError(f"fast_reciprocal_NNs: expected (H, W, D) maps of the same D; got {pts1.shape} and {pts2.shape}")


def _matcher_options(matcher_kw):
    """(dist, workers) from the official matcher keywords: brute force when dist or block_size is
    given (dist 'l2' by default, as the official cdist matcher), else a KD-tree."""
    matcher_kw = dict(matcher_kw)
    dist = matcher_kw.pop("dist", "l2" if "block_size" in matcher_kw else None)
    if dist not in (None, "dot", "l2"):
        raise InputError(f"fast_reciprocal_NNs: unknown dist={dist!r}; expected 'dot' or 'l2'")
    workers = matcher_kw.pop("workers", 1)
    matcher_kw.pop("block_size", None)
    if matcher_kw:
        raise InputError(f"fast_reciprocal_NNs: unknown argument(s) {sorted(matcher_kw)}")
    return dist, workers


def _walk(search12, search21, shape1, shape2, subsample_or_initxy1, ret_xy, pixel_tol, ret_basin):
    """The official walk (mast3r.fast_nn.fast_reciprocal_NNs) over two searchers: search12 sends
    pixels of image 1 to image 2, search21 back."""
    (H1, W1), (H2, W2) = shape1, shape2
    if isinstance(subsample_or_initxy1, (int, np.integer)) and pixel_tol == 0:
        step = int(subsample_or_initxy1)
        y1, x1 = np.mgrid[step // 2:H1:step, step // 2:W1:step].reshape(2, -1)
        max_iter = MAX_ITER
    else:
        x1, y1 = (np.asarray(v) for v in subsample_or_initxy1)
        max_iter = 1
    xy1 = np.int32(np.unique(x1 + W1 * y1))  # no doubles
    xy2 = np.full_like(xy1, -1)
    old_xy1, old_xy2 = xy1.copy(), xy2.copy()
    notyet = np.ones(len(xy1), dtype=bool)
    basin = np.full((H1 * W1 + 1,), -1, dtype=np.int32) if ret_basin else None
    niter = 0
    while notyet.any():
        xy2[notyet] = search12(xy1[notyet])
        if not ret_basin:
            notyet &= old_xy2 != xy2  # came back to the same pixel of image 2: converged
        xy1[notyet] = search21(xy2[notyet])
        if ret_basin:
            basin[old_xy1[notyet]] = xy1[notyet]
        notyet &= old_xy1 != xy1
        niter += 1
        if niter >= max_iter:  # the start pixels stay in old_xy1 for pixel_tol
            break
        old_xy2[:] = xy2
        old_xy1[:] = xy1

    if pixel_tol > 0:  # keep the start pixels that the walk brings back within pixel_tol
        old_yx1 = np.stack(np.unravel_index(old_xy1, (H1, W1)), axis=-1)
        new_yx1 = np.stack(np.unravel_index(xy1, (H1, W1)), axis=-1)
        converged = np.linalg.norm(old_yx1 - new_yx1, axis=-1) < pixel_tol
        if not isinstance(subsample_or_initxy1, (int, np.integer)):
            xy1 = old_xy1
    else:
        converged = ~notyet
    xy1, xy2 = merge_corres(xy1[converged], xy2[converged], (H1, W1), (H2, W2), ret_xy=ret_xy)
    return (xy1, xy2, basin) if ret_basin else (xy1, xy2)


def extract_correspondences(feats, qonfs, subsample=8, device=None, ptmap_key="pred_desc"):
    """The correspondences of a pair from both decoder runs, as the official sparse_ga function.

    feats: (feat11, feat21, feat22, feat12) maps (H1, W1, D), (H2, W2, D), (H2, W2, D), (H1, W1, D):
      descriptors of image 1 and 2 from the run (1, 2), then of 2 and 1 from the run (2, 1)
      (3D points if '3d' in ptmap_key: matched by a KD-tree, else descriptors by 'dot').
    qonfs: their confidences (H, W) in the same order.
    Returns (xy1 (K, 2), xy2 (K, 2)) pixel (x, y) and conf (K,) = sqrt(q1 q2) of the reciprocal
    matches of both runs, both directions each, unique and sorted by pixel of image 1 (the first
    occurrence's confidence for a pair found more than once).
    """
    del device
    feat11, feat21, feat22, feat12 = (np.asarray(f, np.float32) for f in feats)
    qonf11, qonf21, qonf22, qonf12 = (np.asarray(q, np.float32) for q in qonfs)
    widths = {f.shape[-1] for f in (feat11, feat21, feat22, feat12)}
    if len(widths) != 1:
        raise InputError(f"extract_correspondences: the four maps have different widths {sorted(widths)}")
    if not (feat11.shape[:2] == feat12.shape[:2] == qonf11.shape == qonf12.shape
            and feat21.shape[:2] == feat22.shape[:2] == qonf21.shape == qonf22.shape):
        raise InputError("extract_correspondences: feats and qonfs must be image 1, 2, 2, 1 maps of matching (H, W)")
    dist, workers = (None, 32) if "3d" in ptmap_key else ("dot", 1)
    idx1, idx2, qonf1, qonf2 = [], [], [], []
    for A, B, QA, QB in ((feat11, feat21, qonf11, qonf21), (feat12, feat22, qonf12, qonf22)):
        search_ab, search_ba = _Searcher(A, B, dist, workers), _Searcher(B, A, dist, workers)
        walk = functools.partial(_walk, subsample_or_initxy1=subsample, ret_xy=False, pixel_tol=0, ret_basin=False)
        nn1to2 = walk(search_ab, search_ba, A.shape[:2], B.shape[:2])
        nn2to1 = walk(search_ba, search_ab, B.shape[:2], A.shape[:2])
        idx1.append(np.r_[nn1to2[0], nn2to1[1]])
        idx2.append(np.r_[nn1to2[1], nn2to1[0]])
        qonf1.append(QA.ravel()[idx1[-1]])
        qonf2.append(QB.ravel()[idx2[-1]])
    (H1, W1), (H2, W2) = feat11.shape[:2], feat22.shape[:2]
    xy1, xy2, first = merge_corres(np.concatenate(idx1), np.concatenate(idx2), (H1, W1), (H2, W2),
                                   ret_xy=True, ret_index=True)
    conf = np.sqrt(np.concatenate(qonf1)[first] * np.concatenate(qonf2)[first])
    return xy1, xy2, conf


def pair_correspondences(res11, res21, res22, res12, subsample=8, desc_conf="desc_conf"):
    """What the official sparse alignment keeps of a pair (i, j) (sparse_ga.forward_mast3r): its
    correspondences and a matching score.

    res11, res21, res22, res12: the four results of `symmetric_inference` (image i then j from the
      run (i, j); image j then i from the run (j, i)), dicts of 'pts3d' (H, W, 3), 'conf' (H, W),
      'desc' (H, W, D) and the confidence named by desc_conf (H, W).
    Returns (score, (xy1 (K, 2), xy2 (K, 2), conf (K,))): pixels (x, y) of image i and j as
    `extract_correspondences`; score = (fourth root of the product of the four mean confidences,
    sum of conf, K). The pair (j, i) is the same with xy1 and xy2 swapped, as the official cache.
    """
    results = (res11, res21, res22, res12)
    xy1, xy2, conf = extract_correspondences([r["desc"] for r in results], [r[desc_conf] for r in results],
                                             subsample=subsample)
    means = [np.mean(np.asarray(r["conf"], np.float32), dtype=np.float32) for r in results]
    conf_score = np.sqrt(np.sqrt(means[0] * means[3] * means[1] * means[2]))  # C11 C12 C21 C22, as official
    return (float(conf_score), float(np.sum(conf, dtype=np.float32)), len(conf)), (xy1, xy2, conf)
