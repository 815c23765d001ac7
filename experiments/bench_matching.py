"""Benchmark of MASt3R matching at 512x384: fast_reciprocal_NNs and extract_correspondences.

Descriptor maps (24 channels, unit norm) from two sources:
  smooth  the sparse-alignment fixture's descriptors of views 0 and 1 (random Fourier features of
          the world points, 96x128) resized to 384x512 and renormalised: smooth, crowded maps
  net     the fixture MASt3R checkpoint (random weights) run on the fixture's photographs at 512x384
Reports seconds (second call, compiled), matches, and the nearest-neighbour searches run (each a
brute-force scan of the 196,608 pixels of the other map).

    python experiments/bench_matching.py [--reference ../shared/reference]
"""
import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import dust3r_jax
from dust3r_jax.mast3r import matching


def smooth_descriptors(reference):
    scene = np.load(reference / "mast3r" / "sparse_ga" / "scene.npz")
    maps = []
    for k in (0, 1):
        x = jax.image.resize(jnp.asarray(scene[f"desc__v{k}"]), (384, 512, 24), "linear")
        maps.append(np.asarray(x / jnp.linalg.norm(x, axis=-1, keepdims=True)))
    return maps, [np.ones((384, 512), np.float32)] * 2


def network_descriptors(reference):
    model, params = dust3r_jax.load_model(reference / "mast3r" / "models" / "mast3r_small.pth")
    scene = np.load(reference / "mast3r" / "sparse_ga" / "scene.npz")
    views = []
    for k in (0, 1):
        img = jnp.asarray(scene[f"gt__img_u8__v{k}"], jnp.float32)[None] / 127.5 - 1
        views.append({"img": jax.image.resize(img, (1, 384, 512, 3), "linear"), "true_shape": jnp.array([[384, 512]])})
    pred1, pred2 = jax.jit(lambda p, a, b: model.apply({"params": p}, a, b))(params, *views)
    return ([np.asarray(pred1["desc"][0]), np.asarray(pred2["desc"][0])],
            [np.asarray(pred1["desc_conf"][0]), np.asarray(pred2["desc_conf"][0])])


def count_searches():
    """Wraps matching.nearest_neighbours to count the searched queries."""
    counts = []
    inner = matching.nearest_neighbours

    def counted(queries, db, dist="dot"):
        counts.append(len(queries))
        return inner(queries, db, dist)

    matching.nearest_neighbours = counted
    return counts


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "reference")
    args = parser.parse_args()
    counts = count_searches()
    for name, make in (("smooth", smooth_descriptors), ("net", network_descriptors)):
        (d1, d2), (q1, q2) = make(args.reference)
        for call in ("fast_reciprocal_NNs", "extract_correspondences"):
            run = (lambda: matching.fast_reciprocal_NNs(d1, d2, 8, dist="dot")) if call == "fast_reciprocal_NNs" else (
                lambda: matching.extract_correspondences([d1, d2, d2, d1], [q1, q2, q2, q1], 8))
            run()  # compile
            counts.clear()
            start = time.perf_counter()
            result = run()
            seconds = time.perf_counter() - start
            print(f"{name:7s} {call:24s} {seconds:6.2f} s  {len(result[0]):5d} matches  "
                  f"{sum(counts):6d} searches in {len(counts)} batches", flush=True)


if __name__ == "__main__":
    main()
