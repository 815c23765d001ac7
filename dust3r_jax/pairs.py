"""Pair graphs: which image pairs the network sees, in the official order.

`make_pairs` reproduces `dust3r.image_pairs.make_pairs` element for element. The order matters:
the global aligner numbers its edges by it, and the official swin/logwin graphs list their pairs in
the iteration order of a Python `set` of (min, max) index tuples. We build the same set with the
same insertions, so CPython yields the same order (tuple hashes of small ints do not depend on
PYTHONHASHSEED).

Graphs (n images):
* `complete`: every unordered pair, as (i, j) for i in 0..n-1, j < i.
* `swin-W[-noncyclic]`: each image with its W successors (default W = 3), wrapping around unless
  `noncyclic`.
* `logwin-W[-noncyclic]`: each image with the images at offsets +-1, +-2, +-4, ... +-2^(W-1)
  (default W = 3), wrapping around unless `noncyclic`.
* `oneref[-ID]`: image ID (default 0) with every other image.
`symmetrize=True` appends every pair swapped, after all pairs. `prefilter="seqN"` keeps the pairs
whose indices differ by at most N; `"cycN"` the same with a cyclic distance.
"""
from __future__ import annotations

import re

from dust3r_jax.errors import InputError

_GRAPH_RE = re.compile(r"^(complete|swin|logwin|oneref)(?:-(\d+))?(-noncyclic)?$")
_PREFILTER_RE = re.compile(r"^(seq|cyc)(\d+)$")
DEFAULT_WINDOW = 3


def parse_scene_graph(scene_graph: str) -> tuple[str, int | None, bool]:
    """'swin-4-noncyclic' -> ('swin', 4, False). Returns (kind, number or None, cyclic)."""
    match = _GRAPH_RE.match(scene_graph)
    if match is None:
        raise InputError(
            f"scene graph {scene_graph!r}: expected complete, swin-W[-noncyclic], logwin-W[-noncyclic] or oneref-ID")
    kind, number, noncyclic = match.groups()
    if kind == "complete" and (number or noncyclic):
        raise InputError(f"scene graph {scene_graph!r}: 'complete' takes no window or -noncyclic")
    if kind == "oneref" and noncyclic:
        raise InputError(f"scene graph {scene_graph!r}: 'oneref' takes no -noncyclic")
    return kind, (int(number) if number is not None else None), not noncyclic


def pair_indices(num_images: int, scene_graph: str = "complete") -> list[tuple[int, int]]:
    """The unordered pairs of a scene graph, before symmetrisation, in the official order."""
    kind, number, cyclic = parse_scene_graph(scene_graph)
    n = num_images
    if kind == "complete":
        return [(i, j) for i in range(n) for j in range(i)]
    if kind == "oneref":
        ref = 0 if number is None else number
        if not 0 <= ref < n:
            raise InputError(f"scene graph {scene_graph!r}: reference image {ref} is not in 0..{n - 1}")
        return [(ref, j) for j in range(n) if j != ref]
    window = DEFAULT_WINDOW if number is None else number
    if window < 1:
        raise InputError(f"scene graph {scene_graph!r}: the window must be at least 1")
    if kind == "swin":
        partners = lambda i: [i + offset for offset in range(1, window + 1)]  # noqa: E731
    else:  # logwin: powers of two on both sides, left ones first
        offsets = [2 ** k for k in range(window)]
        partners = lambda i: [i - o for o in offsets] + [i + o for o in offsets]  # noqa: E731
    # Same set, same insertion order as the official code: the result order is the set's order.
    pair_set = set()
    for i in range(n):
        for j in partners(i):
            if cyclic:
                j = j % n
            # The official swin graph has no `j == i` test: with a cyclic window of n or more
            # images it pairs an image with itself. Kept for parity (pair order depends on it).
            if j < 0 or j >= n or (j == i and kind == "logwin"):
                continue
            pair_set.add((i, j) if i < j else (j, i))
    return [pair for pair in pair_set]


def filter_pairs_by_distance(edges: list[tuple[int, int]], max_distance: int, cyclic: bool) -> list[int]:
    """Positions of the edges whose image indices are at most `max_distance` apart.

    The number of images is taken as (largest index in the edges) + 1, as the official code does.
    """
    n = max(max(e) for e in edges) + 1
    kept = []
    for position, (i, j) in enumerate(edges):
        distance = abs(i - j)
        if cyclic:
            distance = min(distance, abs(i + n - j), abs(i - n - j))
        if distance <= max_distance:
            kept.append(position)
    return kept


def make_pairs(images: list, scene_graph: str = "complete", prefilter: str | None = None,
               symmetrize: bool = True) -> list[tuple]:
    """Pairs (view1, view2) of `images` (the dicts of `load_images`, each with an `idx`).

    Returns a list of tuples of the image dicts themselves (not copies), in the official order.
    """
    if len(images) < 2:
        raise InputError(f"need at least 2 images to make pairs, got {len(images)}")
    indices = pair_indices(len(images), scene_graph)
    pairs = [(images[i], images[j]) for i, j in indices]
    if symmetrize:
        pairs += [(second, first) for first, second in pairs]
    if prefilter is not None:
        match = _PREFILTER_RE.match(prefilter)
        if match is None:
            raise InputError(f"prefilter {prefilter!r}: expected None, 'seqN' or 'cycN'")
        if pairs:
            edges = [(first["idx"], second["idx"]) for first, second in pairs]
            kept = filter_pairs_by_distance(edges, int(match.group(2)), cyclic=match.group(1) == "cyc")
            pairs = [pairs[k] for k in kept]
    return pairs
