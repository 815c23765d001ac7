"""End-to-end speed of `reconstruct`: images/s for N images at 224 and 512, broken down by stage.

Stages are those of `dust3r-jax reconstruct` (load images, inference, alignment, export), run
through the same library functions on synthetic photos (smooth random 640x480 JPEGs written to a
temporary folder). Weights are random (no download): the released architectures at full size
(ViT-L encoder, ViT-B decoder; `--head linear|dpt`), or a tiny model with `--quick`; linear heads
are set to predict a plausible geometry (see `plausible_linear_heads`) so that alignment converges
and every stage can be timed. Inference
time includes jit compilation (what a user of the command pays); model initialisation is reported
apart ("init") and not counted in images/s. Alignment: PairViewer for 2 images, otherwise the
point-cloud optimiser (`--niter` iterations) on the complete graph.

    python experiments/bench_pipeline.py --quick                      # tiny model, all sizes: a smoke run
    python experiments/bench_pipeline.py --sizes 224 --num-images 2,8 # full size, what fits on a CPU

Prints a table and writes it (Markdown + JSON) to experiments/results/bench_pipeline_<tag>.*
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL.Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TINY = dict(enc_embed_dim=64, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, dec_depth=2, dec_num_heads=2)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,512", help="comma-separated image sizes (224, 512)")
    parser.add_argument("--num-images", default="2,8,16", help="comma-separated numbers of images")
    parser.add_argument("--quick", action="store_true", help="tiny random model instead of the full-size one")
    parser.add_argument("--head", default="linear", choices=("linear", "dpt"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--niter", type=int, default=300, help="alignment iterations (more than 2 images)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--init-backend", default="host", choices=("host", "device"), help="MST initialisation")
    parser.add_argument("--tag", default=None, help="results file suffix (default: quick or full_<head>)")
    return parser.parse_args(argv)


def write_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` smooth random 640x480 JPEGs (upsampled noise: textured, compressible like photos)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = PIL.Image.fromarray(coarse).resize((640, 480), PIL.Image.BICUBIC)
        path = folder / f"photo_{i:03d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def build_model(args, size: int):
    import jax

    from dust3r_jax.loading import init_params
    from dust3r_jax.model import AsymmetricCroCo3DStereo
    from dust3r_jax.model_config import model_config

    overrides = dict(TINY) if args.quick else {}
    overrides.update(head_type=args.head, dtype=args.dtype, img_size=(size, size))
    model = AsymmetricCroCo3DStereo(model_config(**overrides))
    params = jax.block_until_ready(jax.jit(lambda key: init_params(model, key))(jax.random.key(0)))
    if args.head == "linear":
        params = plausible_linear_heads(params)
    return model, params


def plausible_linear_heads(params, patch_size: int = 16, scale: float = 0.05):
    """Random trunk, but linear heads that predict a plausible geometry.

    Fully random heads predict depths of random sign: their focal estimate is 0 and the alignment
    diverges, so the alignment and export stages could not be timed. Here each head's projection
    is shrunk (x `scale`) and its bias gives every 16x16 patch a small fan of rays with positive
    depth and confidence 1 + e^1.5 (above the default threshold 3). The amount of computation, all
    the bench measures, does not depend on these values.
    """
    import flax

    params = flax.core.unfreeze(params)
    rows, cols = np.mgrid[:patch_size, :patch_size] - (patch_size - 1) / 2
    bias = np.concatenate([0.05 * cols.ravel(), 0.05 * rows.ravel(), np.full(patch_size ** 2, 1.5),
                           np.full(patch_size ** 2, 1.5)]).astype(np.float32)
    for head in ("downstream_head1", "downstream_head2"):
        proj = params[head]["proj"]
        proj["kernel"] = proj["kernel"] * scale
        proj["bias"] = np.asarray(bias[: proj["bias"].shape[0]], dtype=proj["bias"].dtype)
    return params


def run_one(args, model, params, photos: list[Path], size: int, out_dir: Path, timings: dict) -> None:
    """One reconstruction; fills `timings` with the seconds of every stage as they finish."""
    import dust3r_jax
    from dust3r_jax import export
    from dust3r_jax.images import load_images
    from dust3r_jax.inference import inference
    from dust3r_jax.pairs import make_pairs

    start = time.perf_counter()
    images = load_images(photos, size=size)
    timings["load"] = time.perf_counter() - start

    start = time.perf_counter()
    pairs = make_pairs(images, scene_graph="complete", symmetrize=True)
    timings["pairs"] = len(pairs)
    output = inference(pairs, model, params, batch_size=args.batch_size, verbose=False)
    timings["inference"] = time.perf_counter() - start

    start = time.perf_counter()
    try:  # (timed even when it fails: a divergence is only detected at the end)
        if len(images) == 2:
            scene = dust3r_jax.global_align(output, mode="pair")
        else:
            scene = dust3r_jax.global_align(output, mode="pointcloud", init="mst", niter=args.niter,
                                            init_backend=getattr(args, "init_backend", "host"))
        scene = scene.clean_pointcloud()
    finally:
        timings["alignment"] = time.perf_counter() - start

    start = time.perf_counter()
    arrays = export.from_aligned_scene(scene, images, min_conf_thr=3.0)
    export.write_reconstruction(out_dir, arrays)
    timings["export"] = time.perf_counter() - start


def format_table(rows: list[dict]) -> str:
    header = "| size | images | pairs | init s | load s | inference s | alignment s | export s | total s | images/s |"
    lines = [header, "|" + "---|" * 10]
    for r in rows:
        if "error" in r:
            stages = " | ".join(f"{r[k]:.2f}" if k in r else "-" for k in ("load", "inference", "alignment", "export"))
            lines.append(f"| {r['size']} | {r['images']} | {r.get('pairs', '-')} | {r['init']:.1f} | {stages} | - | "
                         f"failed: {r['error']} |")
            continue
        total = r["load"] + r["inference"] + r["alignment"] + r["export"]
        lines.append(f"| {r['size']} | {r['images']} | {r['pairs']} | {r['init']:.1f} | {r['load']:.2f} | "
                     f"{r['inference']:.2f} | {r['alignment']:.2f} | {r['export']:.2f} | {total:.2f} | "
                     f"{r['images'] / total:.3f} |")
    return "\n".join(lines)


def save(rows: list[dict], args, argv, tag: str) -> str:
    """Writes the table so far to experiments/results/bench_pipeline_<tag>.{md,json}; returns the context line."""
    import jax

    device = jax.devices()[0]
    context = (f"model: {'tiny (--quick)' if args.quick else 'full size ViT-L/ViT-B'} {args.head} head, "
               f"random weights, dtype {args.dtype}; batch {args.batch_size}; alignment niter {args.niter}; "
               f"device {device.platform} ({device.device_kind}), {platform.node()}; jax {jax.__version__}")
    results = REPO / "experiments" / "results"
    results.mkdir(parents=True, exist_ok=True)
    command = "python experiments/bench_pipeline.py " + " ".join(sys.argv[1:] if argv is None else argv)
    (results / f"bench_pipeline_{tag}.md").write_text(f"`{command}`\n\n{context}\n\n{format_table(rows)}\n")
    (results / f"bench_pipeline_{tag}.json").write_text(json.dumps({"command": command, "context": context,
                                                                     "rows": rows}, indent=1) + "\n")
    return context


def main(argv=None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(n) for n in args.num_images.split(",")]
    tag = args.tag or ("quick" if args.quick else f"full_{args.head}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = write_photos(tmp, max(counts))
        for size in sizes:
            start = time.perf_counter()
            model, params = build_model(args, size)
            init_s = time.perf_counter() - start
            for count in counts:
                out_dir = tmp / f"out_{size}_{count}"
                out_dir.mkdir()
                row = {"size": size, "images": count, "init": init_s}
                try:
                    run_one(args, model, params, photos[:count], size, out_dir, row)
                except Exception as err:  # a diverged alignment (random weights) must not hide the other rows
                    row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:80]}"
                rows.append(row)
                print(format_table(rows[-1:]).splitlines()[-1], flush=True)
                save(rows, args, argv, tag)  # a long run interrupted later keeps its rows
                init_s = 0.0  # paid once per size
    print(save(rows, args, argv, tag))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
