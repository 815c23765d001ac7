"""The kinematic tree of MASt3R's sparse alignment (mast3r/cloud_opt/sparse_ga.py: the 'mst' and
'hclust-*' branches of sparse_global_alignment, compute_min_spanning_tree, bfs).

Cameras are parametrised along a spanning tree of the pair graph: the root's pose is absolute, every
other camera's pose is relative to its parent. The tree is

  * 'mst': the maximum spanning tree of the correspondence counts (scipy's minimum spanning tree of
    the negated counts);
  * 'hclust-<linkage>' (e.g. 'hclust-ward'): scipy's agglomerative clustering of the distances
    1 - count / (3 min(patches)); each merge links the two clusters' representatives (the image
    whose normalised scores sum higher, the second on ties), and the resulting tree is then read
    as the 'mst' branch reads a graph.

The root is the image farthest from every leaf (two breadth-first sweeps), and the edges are listed
in breadth-first order from it, so that a parent always comes before its children.
All of this runs on the host (NumPy, scipy), once per alignment.
"""
import numpy as np
import scipy.cluster.hierarchy as sch
from scipy import sparse
from scipy.sparse import csgraph

from dust3r_jax.errors import InputError

__all__ = ["kinematic_tree", "min_spanning_tree", "hclust_tree"]


def _bfs_ranks(tree, start):
    """Breadth-first rank of every node from `start` (undirected)."""
    order, _ = csgraph.breadth_first_order(tree, start, directed=False)
    ranks = np.empty(len(order), np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def min_spanning_tree(scores):
    """The spanning tree of highest total score, oriented from its most central node.

    scores: (N, N) symmetric, non-negative pair scores (0: no edge; the diagonal may be set).
    Returns (root, edges): edges [(parent, child), ...] in breadth-first order from root.
    """
    scores = np.asarray(scores, np.float64)
    graph = sparse.dok_array(scores.shape)
    for i, j in zip(*np.nonzero(scores)):  # row-major, as torch's nonzero
        graph[i, j] = -scores[i, j]
    tree = csgraph.minimum_spanning_tree(graph)
    if tree.nnz != len(scores) - 1:
        raise InputError(f"sparse alignment: the pair graph is not connected ({len(scores)} images, "
                         f"a spanning forest of {tree.nnz} edges); every image must be linked to the others by pairs")
    # the node farthest from any leaf: sweep from 0, then from the farthest node, then back
    far = _bfs_ranks(tree, 0).argmax()
    ranks2 = _bfs_ranks(tree, far)
    ranks1 = _bfs_ranks(tree, ranks2.argmax())
    root = int(np.minimum(ranks1, ranks2).argmax())
    order, parents = csgraph.breadth_first_order(tree, root, directed=False)
    return root, [(int(parents[k]), int(k)) for k in order[1:]]


def hclust_tree(scores, imsizes, subsample, linkage="ward"):
    """The tree of an agglomerative clustering of the pair graph (the official 'hclust-' mode).

    scores: (N, N) correspondence counts; imsizes: (N, 2) (W, H) of each image.
    Returns (N, N) 0/1 adjacency (ones on the diagonal, as the official matrix).
    """
    n = len(scores)
    patches = np.prod(np.asarray(imsizes, np.int64) // subsample, axis=1)
    max_count = 3 * np.minimum(patches[:, None], patches[None, :])
    # float32, as the official torch tensor
    pws = np.minimum(np.asarray(scores, np.float32) / max_count.astype(np.float32), np.float32(1))
    np.fill_diagonal(pws, 1)
    distances = np.where(pws != 0, 1 - pws, 2)
    merges = sch.linkage(sch.distance.squareform(distances), method=linkage)
    tree = np.eye(n)
    representative = {i: i for i in range(n)}
    for k, (a, b) in enumerate(merges[:, :2].astype(int)):
        a, b = representative[a], representative[b]
        tree[a, b] = tree[b, a] = 1
        best = a if pws[a].sum() > pws[b].sum() else b
        representative[n + k] = best
        pws[best] = np.maximum(pws[a], pws[b])
    return tree


def kinematic_tree(scores, imsizes, subsample=8, mode="hclust-ward"):
    """(root, edges) of the cameras' kinematic chain for `mode` 'mst' or 'hclust-<linkage>'.

    scores: (N, N) correspondence counts of the pairs (0 where no pair); imsizes: (N, 2) (W, H).
    """
    if mode == "mst":
        return min_spanning_tree(scores)
    if mode.startswith("hclust-"):
        return min_spanning_tree(hclust_tree(scores, imsizes, subsample, mode.split("-", 1)[1]))
    raise InputError(f"sparse alignment: unknown kinematic_mode {mode!r}; expected 'mst' or 'hclust-<linkage>' "
                     f"(e.g. 'hclust-ward')")
