"""`dust3r-jax reconstruct IMAGES_OR_DIR --weights W --out DIR`: photos -> a 3D scene on disk.

Stages (each timed, reported in `summary.txt` and on stdout):
1. load images (`load_images`: official resize/crop, 224 or 512);
2. load weights (`load_model`: official .pth, HF folder or converted directory);
3. inference on the pairs of the scene graph (`make_pairs` + batched `inference`);
4. alignment: two images -> PairViewer (`global_align(mode="pair")`), more -> the point-cloud
   optimiser from the spanning-tree initialisation (`--niter`, `--schedule`, `--lr`); then, as the
   official demo does, `clean_pointcloud()`;
5. export (see `dust3r_jax.export`): scene.glb, points.ply, cameras.json, depth/, conf/,
   sparse/0/ (COLMAP text model at the original image resolution), summary.txt.

Nothing half-written is left behind: everything goes to a hidden sibling folder that is renamed
to `--out` at the very end (and removed on any failure). An existing `--out` is an error unless
`--overwrite`, and even then only a folder that a previous reconstruct wrote (it holds the marker
file `.dust3r-jax-output`) is replaced, once the new result is complete. Where `--out` may go and
how interrupted runs are cleaned up: `dust3r_jax.commands.output_folder`.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path

from dust3r_jax.commands import output_folder
from dust3r_jax.errors import InputError
from dust3r_jax.hub import resolve_weights

from dust3r_jax import shipped
from dust3r_jax.shipped import DEFAULT_MODEL

STAGES = ("load images", "load weights", "inference", "alignment", "export")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGES_OR_DIR",
                        help="image files (.jpg/.jpeg/.png) and/or folders of them (sorted by name)")
    parser.add_argument("--weights", default=None,
                        help="official .pth, Hugging Face folder (config.json + model.safetensors), converted folder, "
                             "Hugging Face Hub id (naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt, downloaded once) or "
                             "the name of a model shipped in the package; default: the shipped "
                             f"'{DEFAULT_MODEL}' model (trained on procedural scenes: use official weights for photos)")
    parser.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists and a previous reconstruct wrote it (marker file "
                             f"{output_folder.MARKER})")
    parser.add_argument("--image-size", type=int, default=None,
                        help="network resolution: the long side (512, or 128 for the shipped model), or 224 "
                             "(square crop); default: the model's own training resolution (its img_size)")
    parser.add_argument("--square-ok", action="store_true", help="at 512, keep square images square")
    parser.add_argument("--scene-graph", default="complete",
                        help="complete | swin-W[-noncyclic] | logwin-W[-noncyclic] | oneref-ID")
    parser.add_argument("--prefilter", default=None, help="seqN | cycN: drop pairs more than N frames apart")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per network call")
    parser.add_argument("--alignment", choices=("dense", "sparse"), default="dense",
                        help="dense: DUSt3R's global alignment (any weights); sparse: MASt3R's sparse alignment "
                             "(MASt3R weights), which also writes its matches for COLMAP (database.db, needs pycolmap)")
    parser.add_argument("--niter", type=int, default=300,
                        help="global alignment iterations (>2 images); sparse: iterations of each of its two stages")
    parser.add_argument("--schedule", default="cosine", choices=("cosine", "linear"), help="learning-rate schedule")
    parser.add_argument("--lr", type=float, default=0.01, help="global alignment learning rate")
    parser.add_argument("--min-conf-thr", type=float, default=None,
                        help="pixels with confidence above this are kept in the point cloud and COLMAP model; "
                             "default: 3 (the official demo's), or a shipped model's own (its MODEL_CARD.md)")
    parser.add_argument("--no-clean", action="store_true",
                        help="skip clean_pointcloud() (which drops points hidden behind other views' surfaces)")
    parser.add_argument("--mesh", action="store_true", help="scene.glb holds a mesh instead of a point cloud")
    parser.add_argument("--max-colmap-points", type=int, default=100_000,
                        help="at most this many points in sparse/0/points3D.txt (even subsample)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None, help="default: JAX's default backend")
    parser.add_argument("--devices", type=int, default=None,
                        help="how many devices of that backend to split inference and alignment over "
                             "(default: all it has)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                        help="compute dtype of the network trunk (heads and alignment stay float32)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--keep-degenerate", action="store_true",
                        help="write a degenerate result (zero focal, no confident point) for inspection; "
                             "the exit code is still 1 and summary.txt says why")


def _check_arguments(args) -> tuple[Path | None, Path]:
    """Cheap checks before any work, so that a typo does not cost a model load (nor a lost folder).

    Only `output_folder.recover_interrupted` touches the disk here, and only hidden siblings of
    `--out` that runs killed earlier left behind."""
    weights = _check_weights(args.weights)
    _check_numbers(args)
    out = Path(args.out)
    inputs = output_folder.input_folders(args.images) + output_folder.weights_paths(weights)
    output_folder.check_location(out, inputs)
    output_folder.recover_interrupted(out)
    output_folder.check_replaceable(out, args.overwrite)
    output_folder.check_writable_parent(out)
    return weights, out


def _check_weights(weights) -> Path | None:
    """--weights as a Path (a shipped model's name: its checked folder in the package); None stays
    None (the caller then uses the default shipped model)."""
    if weights is None:
        return None
    if shipped.is_model_name(weights) and not Path(weights).exists():
        return shipped.shipped_folder(weights)  # unknown names: an error listing the shipped ones
    weights = Path(resolve_weights(weights))  # a Hub id: its cached download
    if not weights.exists():
        raise InputError(f"--weights {weights}: no such file or folder")
    return weights


def _check_numbers(args) -> None:
    """Counts must be positive, rates and thresholds finite: NaN would only show after inference."""
    if args.devices is not None and args.devices < 1:
        raise InputError(f"--devices {args.devices}: must be at least 1")
    for name in ("batch_size", "niter", "max_colmap_points"):
        if getattr(args, name) < (1 if name == "batch_size" else 0):
            raise InputError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be positive")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise InputError(f"--lr {args.lr}: must be a finite number > 0")
    # confidences are >= 1: a threshold below keeps every pixel, an infinite one keeps none
    if args.min_conf_thr is None:  # the official demos' 3 (DUSt3R) or 1.5 (MASt3R), or a shipped model's
        args.min_conf_thr = 1.5 if args.alignment == "sparse" else shipped.default_min_conf_thr(args.weights)
    if not (math.isfinite(args.min_conf_thr) and args.min_conf_thr >= 0):
        raise InputError(f"--min-conf-thr {args.min_conf_thr}: must be a finite number >= 0")


def _device_context(device_kind: str | None):
    if device_kind is None:
        return contextlib.nullcontext()
    import jax

    from dust3r_jax import meshes

    return jax.default_device(meshes.backend_devices(device_kind)[0])


def _mesh(device_kind: str | None, count: int | None):
    """The mesh of the first `count` devices (default all) of the chosen backend, or None for one."""
    from dust3r_jax import meshes

    devices = meshes.backend_devices(device_kind, count)
    print(f"using {len(devices)} {devices[0].platform.upper()} device(s)"
          + (" (inference and alignment split over them)" if len(devices) > 1 else ""))
    return meshes.data_mesh(devices) if len(devices) > 1 else None


def _sparse_align(model, params, images, pairs, args, mesh, lap):
    """MASt3R's sparse alignment of `images` over `pairs` (each unordered pair decoded both ways)."""
    from dust3r_jax.mast3r.align import sparse_align
    from dust3r_jax.mast3r.sparse_ga import symmetric_predictions
    from dust3r_jax.model import AsymmetricMASt3R

    if not isinstance(model, AsymmetricMASt3R):
        raise InputError(f"--alignment sparse needs MASt3R weights (local descriptors); "
                         f"these are {type(model).__name__}'s")
    views = {int(image["idx"]): image for image in images}
    predictions = symmetric_predictions(model, params, views, [(int(a["idx"]), int(b["idx"])) for a, b in pairs],
                                        batch_size=args.batch_size, mesh=mesh)
    lap("inference")
    return sparse_align([views[k] for k in range(len(images))], predictions, niter1=args.niter, niter2=args.niter)


def _align(output, num_images: int, args, mesh=None):
    import dust3r_jax

    if num_images == 2:
        scene = dust3r_jax.global_align(output, mode="pair", min_conf_thr=args.min_conf_thr)
    else:
        scene = dust3r_jax.global_align(output, mode="pointcloud", init="mst", niter=args.niter,
                                        schedule=args.schedule, lr=args.lr, min_conf_thr=args.min_conf_thr,
                                        verbose=not args.quiet, mesh=mesh)
    if not args.no_clean and hasattr(scene, "clean_pointcloud"):
        cleaned = scene.clean_pointcloud()
        scene = scene if cleaned is None else cleaned
    return scene


def reconstruct(args) -> dict:
    """Runs every stage; returns the summary (numbers, timings). Writes `args.out` atomically."""
    weights, out = _check_arguments(args)
    # imports first, so that their cost (jax, trimesh) is not booked to the first stage
    import numpy as np

    from dust3r_jax import export
    from dust3r_jax.images import load_images
    from dust3r_jax.inference import inference
    from dust3r_jax.pairs import make_pairs

    _device_context(args.device)  # (an unknown backend is refused before any work)
    mesh = _mesh(args.device, args.devices)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage):
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    def read_images(size):
        images = load_images(args.images, size=size, square_ok=args.square_ok)
        if len(images) < 2:
            raise InputError(f"found {len(images)} image in {' '.join(args.images)}; a reconstruction needs at least 2")
        lap("load images")
        return images

    def read_weights():
        from dust3r_jax.loading import load_model

        overrides = {"dtype": args.dtype} if args.dtype != "float32" else {}
        with _device_context(args.device):
            loaded = load_model(weights if weights is not None else DEFAULT_MODEL, **overrides)
        lap("load weights")
        return loaded

    if args.image_size is None:  # the model's training resolution: known once the model is read
        model, params = read_weights()
        images = read_images(int(model.config.img_size[0]))
    else:
        images = read_images(args.image_size)
        model, params = read_weights()

    with _device_context(args.device):

        # two views: the PairViewer needs exactly the pairs (0, 1), (1, 0)
        scene_graph = "complete" if len(images) == 2 else args.scene_graph
        pairs = make_pairs(images, scene_graph=scene_graph, prefilter=args.prefilter, symmetrize=True)
        if not pairs:
            raise InputError(f"--scene-graph {args.scene_graph} --prefilter {args.prefilter}: leaves no pairs")
        # a degenerate alignment (zero focal) makes numpy warn about every division on its way;
        # `_degenerate` below reports it once, in one line
        with np.errstate(divide="ignore", invalid="ignore"):
            if args.alignment == "sparse":
                scene = _sparse_align(model, params, images, pairs, args, mesh, lap)
                lap("alignment")
                arrays = export.from_sparse_scene(scene, images, args.min_conf_thr)
            else:
                output = inference(pairs, model, params, batch_size=args.batch_size, verbose=not args.quiet,
                                   mesh=mesh if mesh is not None else False)
                lap("inference")
                scene = _align(output, len(images), args, mesh)
                lap("alignment")
                arrays = export.from_aligned_scene(scene, images, args.min_conf_thr)
    # an unusable result is never a silent success: an error, or with --keep-degenerate written
    # for inspection with a warning in summary.txt (and still a non-zero exit, see `run`)
    warning = _degenerate(arrays, args.min_conf_thr)
    if warning and not args.keep_degenerate:
        raise InputError(f"{warning}; nothing written (--keep-degenerate writes it anyway)")
    summary = {
        "images": [(image["source"]["path"], tuple(int(s) for s in image["true_shape"][0])) for image in images],
        "pairs": len(pairs), "scene_graph": scene_graph, "weights": export.scene.printable(str(weights)) if weights is not None else f"{DEFAULT_MODEL} (shipped)",
        "alignment": (f"sparse (MASt3R), {args.niter} + {args.niter} iterations" if args.alignment == "sparse"
                      else "pair viewer" if len(images) == 2 else f"point cloud, {args.niter} iterations"),
        "loss": float(scene.losses.get("2d", float("nan")) if args.alignment == "sparse"
                      else getattr(scene, "loss", float("nan"))),
        "devices": 1 if mesh is None else int(mesh.devices.size),
        "points": int(sum(m.sum() for m in arrays.masks)), "timings": timings, "warning": warning,
    }
    corres = scene.corres if args.alignment == "sparse" else None
    _write_atomically(out, args.overwrite, lambda folder: _export(folder, arrays, args, summary, lap, corres))
    return summary


def _degenerate(arrays, min_conf_thr: float) -> str | None:
    """Why the result is unusable, or None: a focal length that is not a positive number (e.g. 0
    from featureless images, whose depths the focal estimate cannot use), a non-finite pose, or
    no confident point at all."""
    import numpy as np

    focals = arrays.intrinsics[:, 0, 0]
    bad = [f"{name} ({focal:.3g})" for name, focal in zip(arrays.names, focals) if not (np.isfinite(focal) and focal > 0)]
    if bad:
        return (f"degenerate reconstruction: no usable focal length for {', '.join(bad)} "
                "(featureless or unrelated images, or weights that do not fit them)")
    if not np.all(np.isfinite(arrays.cam2world)):
        return "degenerate reconstruction: the alignment produced non-finite camera poses"
    if not any(mask.any() for mask in arrays.masks):
        return f"degenerate reconstruction: no point has a confidence above --min-conf-thr {min_conf_thr:g}"
    return None


def _export(folder: Path, arrays, args, summary: dict, lap, corres=None) -> None:
    from dust3r_jax import export

    export.write_reconstruction(folder, arrays, as_mesh=args.mesh, max_colmap_points=args.max_colmap_points)
    if corres is not None:  # the sparse alignment's matches, for COLMAP's mapper
        try:
            counts = export.write_colmap_database(folder / "database.db", arrays, corres)
            summary["matches"] = (f"{counts['matches']} in {counts['pairs']} pairs, {counts['keypoints']} keypoints "
                                  f"(database.db)")
        except InputError as err:  # pycolmap missing: everything else is written, and the summary says so
            summary["matches"] = f"not written: {err}"
    lap("export")
    (folder / "summary.txt").write_text(format_summary(summary) + "\n")


# kept under its old name: tests and callers use it
_write_atomically = output_folder.write_atomically


def format_summary(summary: dict) -> str:
    """The human-readable table of summary.txt and stdout."""
    shapes: dict = {}
    for _, (height, width) in summary["images"]:
        shapes[f"{width}x{height}"] = shapes.get(f"{width}x{height}", 0) + 1
    sizes = ", ".join(f"{count} x {shape}" for shape, count in shapes.items())
    lines = [
        f"images      {len(summary['images'])} ({sizes}, W x H at network resolution)",
        f"pairs       {summary['pairs']} (scene graph {summary['scene_graph']}, symmetrized)",
        f"weights     {summary['weights']}",
        f"devices     {summary.get('devices', 1)}",
        f"alignment   {summary['alignment']}" + (f", final loss {summary['loss']:.6g}" if summary["loss"] == summary["loss"] else ""),
        f"points      {summary['points']} above the confidence threshold",
        *([f"matches     {summary['matches']}"] if summary.get("matches") else []),
        *([f"WARNING     {summary['warning']}"] if summary.get("warning") else []),
        "",
        f"{'stage':<14}{'seconds':>10}",
    ]
    total = 0.0
    for stage in STAGES:
        seconds = summary["timings"].get(stage, float("nan"))
        total += seconds
        lines.append(f"{stage:<14}{seconds:>10.2f}")
    lines.append(f"{'total':<14}{total:>10.2f}")
    count = len(summary["images"])
    lines.append(f"{'images/s':<14}{count / total if total > 0 else float('nan'):>10.3f}")
    return "\n".join(lines)


def run(args) -> int:
    """0 on success; 1 when --keep-degenerate wrote a degenerate result (one warning line)."""
    summary = reconstruct(args)
    print(format_summary(summary))
    from dust3r_jax.export.scene import printable

    print(f"written to {printable(str(args.out))}")
    if summary["warning"]:
        print(f"dust3r-jax reconstruct: warning: {summary['warning']}", file=sys.stderr)
        return 1
    return 0
