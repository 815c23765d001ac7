"""Procedural scenes (`dust3r_jax.data.procedural`) as a training dataset in a folder layout.

Layout under ROOT (written by `write_split`, packed by the TFDS builder like the other sources):
    procedural_<split>.json     {"split", "seeds", "num_views", "size": [W, H],
                                 "pairs": [[seed, view_a, view_b, overlap], ...]}
    <split>/<seed:07d>/<v:02d>.png    RGB, W x H
    <split>/<seed:07d>/<v:02d>.npz    depth (H, W) float32 (0 = sky), camera_intrinsics (3, 3),
                                      camera_pose (4, 4) cam2world, both float32

Splits draw disjoint seeds: 'train' from 0, 'test' from TEST_FIRST_SEED, so a test scene is never
a training scene. A pair is two views of one scene whose co-visible fraction (`overlap`, the
smaller of the two directions) is at least `min_overlap`; its view order is a coin of the
dataset's generator.
"""
import io
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import PIL.Image

from dust3r_jax.data.base import ViewDataset
from dust3r_jax.data.files import read_image, read_json, read_npz
from dust3r_jax.data.procedural.scene import make_scene, render_view
from dust3r_jax.errors import ConfigError, InputError

FIRST_SEED = {"train": 0, "test": 1_000_000}
TEST_FIRST_SEED = FIRST_SEED["test"]
DEFAULT_SIZE = (160, 120)


def index_path(split):
    return f"procedural_{split}.json"


def view_paths(split, seed, view):
    stem = f"{split}/{seed:07d}/{view:02d}"
    return f"{stem}.png", f"{stem}.npz"


def covisible_fraction(depth_a, k_a, cam2world_a, depth_b, k_b, cam2world_b, rel_tol=0.03):
    """Fraction of view a's valid pixels that view b sees (inside b's image, not occluded there)."""
    height, width = depth_a.shape
    v, u = np.nonzero(depth_a > 0)
    if u.size == 0:
        return 0.0
    z = depth_a[v, u]
    cam_a = np.stack([(u - k_a[0, 2]) / k_a[0, 0] * z, (v - k_a[1, 2]) / k_a[1, 1] * z, z], axis=1)
    world = cam_a @ cam2world_a[:3, :3].T + cam2world_a[:3, 3]
    cam_b = (world - cam2world_b[:3, 3]) @ cam2world_b[:3, :3]
    in_front = cam_b[:, 2] > 1e-6
    zb = np.where(in_front, cam_b[:, 2], 1.0)
    ub = np.round(k_b[0, 0] * cam_b[:, 0] / zb + k_b[0, 2]).astype(np.int64)
    vb = np.round(k_b[1, 1] * cam_b[:, 1] / zb + k_b[1, 2]).astype(np.int64)
    inside = in_front & (ub >= 0) & (ub < depth_b.shape[1]) & (vb >= 0) & (vb < depth_b.shape[0])
    seen = np.zeros_like(inside)
    seen[inside] = np.abs(depth_b[vb[inside], ub[inside]] - zb[inside]) <= rel_tol * zb[inside]
    return float(seen.mean())


def _encode_png(image):
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def render_scene_files(seed, num_views, size):
    """{relative path: bytes} of one scene's views and the overlaps of its view pairs (split-free)."""
    scene = make_scene(seed, num_views)
    views = [render_view(scene, v, *size) for v in range(num_views)]
    files = {}
    for v, view in enumerate(views):
        files[f"{v:02d}.png"] = _encode_png(view["image"])
        buffer = io.BytesIO()
        np.savez_compressed(buffer, depth=view["depth"], camera_intrinsics=view["intrinsics"],
                            camera_pose=view["cam2world"])
        files[f"{v:02d}.npz"] = buffer.getvalue()
    pairs = []
    for a in range(num_views):
        for b in range(a + 1, num_views):
            va, vb = views[a], views[b]
            forward = covisible_fraction(va["depth"], va["intrinsics"], va["cam2world"],
                                         vb["depth"], vb["intrinsics"], vb["cam2world"])
            backward = covisible_fraction(vb["depth"], vb["intrinsics"], vb["cam2world"],
                                          va["depth"], va["intrinsics"], va["cam2world"])
            pairs.append([int(seed), a, b, round(min(forward, backward), 4)])
    return files, pairs


def _render_job(job):
    return render_scene_files(*job)


def write_split(root, split, num_scenes, num_views=8, size=DEFAULT_SIZE, first_seed=None, workers=1,
                progress=True):
    """Render `num_scenes` scenes of `split` into `root` (see the module docstring); returns the index."""
    if split not in FIRST_SEED and first_seed is None:
        raise ConfigError(f"procedural split {split!r}: expected one of {sorted(FIRST_SEED)} (or pass first_seed)")
    if num_scenes <= 0 or num_views < 2:
        raise ConfigError(f"procedural: num_scenes={num_scenes}, num_views={num_views} (need >= 1 and >= 2)")
    first = FIRST_SEED[split] if first_seed is None else int(first_seed)
    seeds = list(range(first, first + int(num_scenes)))
    root = Path(root)
    jobs = [(seed, num_views, tuple(size)) for seed in seeds]
    all_pairs = []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc=f"render {split}", unit="scene")
    executor = ProcessPoolExecutor(workers) if workers > 1 else None
    results = executor.map(_render_job, jobs, chunksize=4) if executor else map(_render_job, jobs)
    try:
        for seed, (files, pairs) in zip(seeds, results):
            folder = root / split / f"{seed:07d}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (folder / name).write_bytes(data)
            all_pairs.extend(pairs)
            if bar is not None:
                bar.update()
    finally:
        if executor:
            executor.shutdown()
        if bar is not None:
            bar.close()
    index = dict(split=split, seeds=seeds, num_views=int(num_views), size=list(size), pairs=all_pairs)
    (root / index_path(split)).write_text(json.dumps(index))
    return index


def read_index(store, split):
    index = read_json(store, index_path(split))
    for key in ("seeds", "num_views", "pairs"):
        if key not in index:
            raise InputError(f"{store.describe(index_path(split))}: no {key!r} (written by write_split?)")
    return index


class Procedural(ViewDataset):
    """`Procedural(split='train', ROOT, resolution, min_overlap=0.15, max_overlap=1.0, ...)`."""

    dataset_name = "Procedural"
    splits = ("train", "test")

    def __init__(self, *, min_overlap=0.15, max_overlap=1.0, **kwargs):
        super().__init__(**kwargs)
        if self.split is None:
            raise ConfigError("Procedural: split is required ('train' or 'test')")
        self.index = read_index(self.store, self.split)
        self.pairs = [tuple(p) for p in self.index["pairs"] if min_overlap <= p[3] <= max_overlap]
        if not self.pairs:
            raise InputError(f"{self.store.describe(index_path(self.split))}: no pair with overlap in "
                             f"[{min_overlap}, {max_overlap}]")

    @classmethod
    def files_to_pack(cls, store, split):
        index = read_index(store, split)
        paths = [index_path(split)]
        for seed in index["seeds"]:
            for view in range(index["num_views"]):
                paths.extend(view_paths(split, seed, view))
        return paths

    def __len__(self):
        return len(self.pairs)

    def read_view(self, seed, view, resolution, rng):
        """One view through the official crop/resize: PIL image, depth, K, cam2world."""
        image_path, camera_path = view_paths(self.split, seed, view)
        image = read_image(self.store, image_path)
        data = read_npz(self.store, camera_path)
        image, depth, intrinsics = self._crop_resize_if_necessary(
            image, np.asarray(data["depth"], np.float32), np.asarray(data["camera_intrinsics"], np.float32),
            resolution, rng, info=self.store.describe(image_path))
        return dict(img=image, depthmap=depth, camera_pose=np.asarray(data["camera_pose"], np.float32),
                    camera_intrinsics=intrinsics, dataset=self.dataset_name, label=f"{seed:07d}",
                    instance=f"{view:02d}")

    def _get_views(self, idx, resolution, rng):
        seed, view_a, view_b, _ = self.pairs[idx]
        order = (view_a, view_b) if rng.integers(2) == 0 else (view_b, view_a)
        return [self.read_view(seed, view, resolution, rng) for view in order]

    def __repr__(self):
        return (f"Procedural({len(self)} pairs from {len(self.index['seeds'])} scenes, split={self.split!r}, "
                f"resolutions={self._resolution_str()})")
