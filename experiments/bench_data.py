"""Throughput of the training data pipeline on CPU (pairs per second per host).

The reference fakes are tiny (128x96), so this writes a realistic ARKitScenes-layout folder
(640x480 JPEG frames, 16-bit PNG depth, the official metadata file) and times the full view
pipeline on it: decode, principal-point crop, LANCZOS/BICUBIC resize, OpenCV-nearest depth,
pts3d, collate. Reported: pairs/s reading the folder and a TFDS array_record build, in this
thread, with grain reader threads and with grain reader processes, and the CPU time this
process spent per pair (contention-independent for the in-thread rows; worker processes' CPU
is not counted).

    python experiments/bench_data.py [--pairs 64] [--threads 2] [--json out.json]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import PIL.Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from dust3r_jax.data.loader import PairLoader  # noqa: E402
from dust3r_jax.data.mixture import parse_dataset  # noqa: E402

AR5_512 = [(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)]


def write_fake_arkitscenes(root, n_images=32, size=(640, 480), seed=0):
    """A `Training/` split of n_images frames of one scene, consecutive frames paired."""
    rng = np.random.default_rng(seed)
    width, height = size
    scene = "40000000"
    split = os.path.join(root, "Training")
    os.makedirs(os.path.join(split, scene, "vga_wide"))
    os.makedirs(os.path.join(split, scene, "lowres_depth"))
    yy, xx = np.mgrid[0:height, 0:width]
    images = []
    for i in range(n_images):
        name = f"{scene}_{100 + i:.3f}.png"
        images.append(name)
        base = np.stack([(xx + 7 * i) % 256, (yy + 3 * i) % 256, (xx + yy) % 256], -1).astype(np.float32)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        PIL.Image.fromarray(pixels).save(os.path.join(split, scene, "vga_wide", name.replace(".png", ".jpg")), quality=90)
        depth_mm = (1500 + 500 * np.sin(xx / 50.0 + i) + 300 * np.cos(yy / 40.0)).astype(np.uint16)
        PIL.Image.fromarray(depth_mm).save(os.path.join(split, scene, "lowres_depth", name))
    intrinsics = np.tile(np.array([[530.0, 0, 319.6], [0, 530.0, 239.4], [0, 0, 1]]), (n_images, 1, 1))
    poses = np.tile(np.eye(4), (n_images, 1, 1))
    poses[:, 0, 3] = np.arange(n_images) * 0.05
    pairs = np.array([[i, j, 0.5] for i in range(n_images) for j in (i + 1, i + 2) if j < n_images], np.float64)
    np.savez(os.path.join(split, "all_metadata.npz"), scenes=np.array([scene]), sceneids=np.zeros(n_images, np.int64),
             images=np.array(images), intrinsics=intrinsics, trajectories=poses, pairs=pairs,
             counts=np.array([0]))


def time_loader(dataset_text, batch_size, n_pairs, threads, workers=0, **kwargs):
    loader = PairLoader(parse_dataset(dataset_text, **kwargs), batch_size, seed=0, num_threads=threads,
                        num_workers=workers, world_size=1, rank=0)
    iterator = loader.epoch(0)
    next(iterator)  # warm-up: imports, first file opens, thread start
    start, cpu_start, done = time.perf_counter(), time.process_time(), 0
    while done < n_pairs:
        done += len(next(iterator)[0]["label"])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return done / wall, 1000 * cpu / done


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=48, help="pairs timed per measurement")
    parser.add_argument("--threads", type=int, default=2, help="grain reader threads for the threaded rows")
    parser.add_argument("--workers", type=int, default=2, help="grain reader processes for the last row")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "arkitscenes")
        write_fake_arkitscenes(root)
        from dust3r_jax.data.tfds_builder import build_source_dataset

        build_source_dataset("ARKitScenes", root, os.path.join(tmp, "tfds"), splits=["train"])
        configs = {
            "224 aug_crop=256": "ARKitScenes(split='train', aug_crop=256, resolution=224, transform=ColorJitter)",
            "512 AR5 aug_crop=256": f"ARKitScenes(split='train', aug_crop=256, resolution={AR5_512}, transform=ColorJitter)",
        }
        n_pairs = args.pairs
        for name, text in configs.items():
            for source, kwargs in (("folder", dict(roots={"ARKitScenes": root})),
                                   ("tfds", dict(tfds_data_dir=os.path.join(tmp, "tfds")))):
                for threads in (0, args.threads):
                    rate, cpu_ms = time_loader(f"{10 * n_pairs} @ {text}", 4, n_pairs, threads, **kwargs)
                    results.append(dict(config=name, source=source, threads=threads, pairs_per_s=round(rate, 1),
                                        cpu_ms_per_pair=round(cpu_ms, 1)))
                    print(f"{name:22s} {source:6s} threads={threads}: {rate:7.1f} pairs/s "
                          f"({cpu_ms:.0f} ms CPU of this process per pair)", flush=True)
            rate, _ = time_loader(f"{10 * n_pairs} @ {text}", 4, n_pairs, 0, workers=args.workers,
                                  tfds_data_dir=os.path.join(tmp, "tfds"))
            results.append(dict(config=name, source="tfds", workers=args.workers, pairs_per_s=round(rate, 1)))
            print(f"{name:22s} tfds   workers={args.workers}: {rate:7.1f} pairs/s", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(cpu_count=os.cpu_count(), results=results), handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
