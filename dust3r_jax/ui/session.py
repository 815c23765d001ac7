"""What the web demo does, without the web: uploads -> checked images -> network -> alignment ->
exports, and re-exports of the same result with other display options.

`Engine` holds the model (loaded once per process) and runs one reconstruction at a time (a lock;
the page's queue already serialises the Run button). `Reconstruction` keeps one aligned scene in
memory and writes scene.glb, cameras.json and a zip of the COLMAP model for a `ViewOptions`
without running the network or the alignment again. Nothing here imports gradio.

Every problem with the user's files is an `InputError` with a one-line message naming the file as
the user uploaded it ("notes.txt: not an image ..."), never a path of the server's temporary folder.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dust3r_jax.errors import InputError

GRAPHS = ("complete", "swin", "logwin", "oneref")
SCHEDULES = ("linear", "cosine")
MAX_ITERATIONS = 5000


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may ask for. The defaults fit a 24 GB GPU at 512x384 with the released
    ViT-L model: 32 images on the complete graph peak at 17.2 GiB on the device for the alignment
    (experiments/results/bench_alignment_gpu.md) plus ~2.3 GB of weights."""
    max_images: int = 32
    max_file_mb: float = 25.0


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The network and alignment settings of one reconstruction (the official demo's)."""
    scene_graph: str = "complete"   # one of GRAPHS
    window: int = 1                 # swin / logwin window
    ref_image: int = 0              # oneref reference image (0-based upload order)
    schedule: str = "linear"        # learning-rate schedule of the alignment
    niter: int = 300                # alignment iterations (more than two images)
    batch_size: int = 8             # pairs per network call

    def graph(self, num_images: int) -> str:
        """The `make_pairs` scene graph string; two images always make the complete pair."""
        if num_images <= 2 or self.scene_graph == "complete":
            return "complete"
        if self.scene_graph in ("swin", "logwin"):
            return f"{self.scene_graph}-{self.window}"
        return f"oneref-{self.ref_image}"

    def check(self) -> None:
        if self.scene_graph not in GRAPHS:
            raise InputError(f"scene graph {self.scene_graph!r}: expected one of {', '.join(GRAPHS)}")
        if self.schedule not in SCHEDULES:
            raise InputError(f"schedule {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if not (isinstance(self.niter, int) and 0 <= self.niter <= MAX_ITERATIONS):
            raise InputError(f"iterations {self.niter!r}: expected an integer in 0..{MAX_ITERATIONS}")
        if self.window < 1 or self.ref_image < 0:
            raise InputError(f"window {self.window} / reference image {self.ref_image}: must be >= 1 / >= 0")


@dataclasses.dataclass(frozen=True)
class ViewOptions:
    """How an aligned scene is exported (the official demo's post-processing controls)."""
    min_conf_thr: float = 3.0       # pixels with a confidence above this are kept
    camera_scale: float = 1.0       # frustum size, times the automatic size
    as_mesh: bool = True            # a mesh over the pixel grid, else a point cloud
    mask_sky: bool = False          # drop sky pixels (`dust3r_jax.sky.segment_sky`)
    clean_depth: bool = True        # the aligner's clean_pointcloud()
    transparent_cams: bool = False  # frusta without the image on their base


@dataclasses.dataclass(frozen=True)
class Exported:
    glb: Path
    cameras: Path
    colmap_zip: Path
    points: int                     # pixels kept in the point cloud / mesh


def window_bounds(scene_graph: str, num_images: int) -> tuple[int, int]:
    """(default, maximum) window of a swin / logwin graph for `num_images` images (official demo:
    swin up to half the images; logwin's offsets 2^(W-1) up to the number of images)."""
    if scene_graph == "logwin":
        top = max(1, math.ceil(math.log2(max(num_images, 2))))
        return top, top
    top = max(1, math.ceil((num_images - 1) / 2))
    return top, top


def check_uploads(paths: list, limits: Limits) -> list[Path]:
    """Uploaded files -> their paths, or an InputError naming the first problem: none, too many,
    empty, too large. (Whether they decode is checked by `load_uploads`.)"""
    paths = [Path(p) for p in (paths or [])]
    if not paths:
        raise InputError("no image uploaded: add one or more photos (one is paired with itself)")
    if len(paths) > limits.max_images:
        raise InputError(f"{len(paths)} images uploaded; this server takes at most {limits.max_images} "
                         "(dust3r-jax ui --max-images)")
    for path in paths:
        size = path.stat().st_size if path.is_file() else 0
        if size == 0:
            raise InputError(f"{path.name}: empty file (0 bytes); upload it again")
        if size > limits.max_file_mb * 1e6:
            raise InputError(f"{path.name}: {size / 1e6:.1f} MB is more than this server takes per file "
                             f"({limits.max_file_mb:g} MB)")
    return paths


def load_uploads(paths: list[Path], size: int) -> list[dict]:
    """`load_images` dicts of the uploads in their order; a single image is duplicated into a
    pair, as the official demo does. Errors name the file, not the server's temporary path."""
    from dust3r_jax.images import load_image

    images = []
    for path in paths:
        try:
            img, source = load_image(path, size=size)
        except InputError as err:
            message = str(err).replace(f"image {path}: ", f"{path.name}: ").replace(str(path), path.name)
            raise InputError(message) from None
        source["path"] = path.name  # exports name the upload, not the server's temporary copy
        images.append({"img": img[None], "true_shape": np.array([img.shape[:2]], dtype=np.int32),
                       "idx": len(images), "instance": str(len(images)), "source": source})
    if len(images) == 1:
        twin = copy.deepcopy(images[0])
        twin["idx"], twin["instance"] = 1, "1"
        images.append(twin)
    return images


class Reconstruction:
    """One aligned scene, kept in memory, and its exports under `folder`.

    `scenes` holds the aligner's scene as is and after clean_pointcloud() (both computed once);
    every `export` only chooses one, masks it and writes files.
    """

    def __init__(self, scene, images: list[dict], folder: Path, summary: dict):
        self.images, self.folder, self.summary = images, Path(folder), summary
        cleaned = scene.clean_pointcloud() if hasattr(scene, "clean_pointcloud") else None
        self.scenes = {False: scene, True: scene if cleaned is None else cleaned}
        self._sky: list[np.ndarray] | None = None
        self.exports = 0

    def arrays(self, view: ViewOptions):
        """The `SceneArrays` for `view`: confidence mask, optional clean-up and sky mask."""
        from dust3r_jax import export

        arrays = export.from_aligned_scene(self.scenes[view.clean_depth], self.images, view.min_conf_thr)
        if view.mask_sky:
            if self._sky is None:
                from dust3r_jax.sky import segment_sky

                self._sky = [segment_sky(img) for img in arrays.imgs]
            arrays = dataclasses.replace(arrays, masks=[m & ~s for m, s in zip(arrays.masks, self._sky)])
        return arrays

    def export(self, view: ViewOptions) -> Exported:
        """Writes folder/export-NNN/{scene.glb, cameras.json, colmap.zip} (a new folder each time,
        so that browsers never show a cached file) and removes the exports before the last one."""
        from dust3r_jax import export

        if not (math.isfinite(view.min_conf_thr) and view.min_conf_thr >= 0):
            raise InputError(f"minimum confidence {view.min_conf_thr}: must be a finite number >= 0")
        if not (math.isfinite(view.camera_scale) and view.camera_scale > 0):
            raise InputError(f"camera size {view.camera_scale}: must be a finite number > 0")
        arrays = self.arrays(view)
        self.exports += 1
        out = self.folder / f"export-{self.exports:03d}"
        out.mkdir(parents=True)
        export.write_glb(out / "scene.glb", arrays, as_mesh=view.as_mesh, camera_scale=view.camera_scale,
                         camera_images=not view.transparent_cams)
        export.write_cameras_json(out / "cameras.json", arrays)
        export.write_colmap_text(out / "colmap" / "sparse" / "0", arrays)
        archive = shutil.make_archive(str(out / "colmap"), "zip", root_dir=out / "colmap")
        shutil.rmtree(out / "colmap")
        for old in self.folder.glob("export-*"):
            if old.name < f"export-{self.exports - 1:03d}":
                shutil.rmtree(old, ignore_errors=True)
        points = int(sum(m.sum() for m in arrays.masks))
        return Exported(out / "scene.glb", out / "cameras.json", Path(archive), points)

    def gallery(self) -> list[tuple[Path, str]]:
        """(png, caption) of each image, its depth map and its confidence map, in upload order."""
        import PIL.Image

        from dust3r_jax.export.maps import colorize
        from dust3r_jax.export.scene import to_uint8

        arrays = self.arrays(ViewOptions(clean_depth=False))
        folder = self.folder / "gallery"
        folder.mkdir(parents=True, exist_ok=True)
        items = []
        for name, img, depth, conf in zip(arrays.names, arrays.imgs, arrays.depths, arrays.confs):
            pictures = (("image", to_uint8(img)), ("depth", colorize(depth, depth > 0)),
                        # confidence is heavy-tailed (1 + exp(logit)): colour its log, as export.maps does
                        ("confidence", colorize(np.log(np.maximum(conf, 1e-12)))))
            for kind, pixels in pictures:
                path = folder / f"{name}_{kind}.png"
                PIL.Image.fromarray(pixels).save(path)
                items.append((path, f"{name}: {kind}"))
        return items


ProgressFn = Callable[[float, str], None]


class Engine:
    """The model, loaded once, and the reconstruction pipeline of the page.

    `inference_runs` and `alignment_runs` count network and alignment runs in this process: the
    page shows them, and tests read them to prove that a re-export ran neither.
    """

    def __init__(self, weights, image_size: int | None = None, limits: Limits = Limits()):
        from dust3r_jax.loading import load_model

        self.weights = weights
        self.model, self.params = load_model(weights)
        self.image_size = int(image_size or self.model.config.img_size[0])
        self.limits = limits
        self.inference_runs = 0
        self.alignment_runs = 0
        self._lock = threading.Lock()

    def reconstruct(self, uploads: list, options: RunOptions, folder: Path,
                    progress: ProgressFn | None = None) -> Reconstruction:
        """Checks and loads `uploads`, runs the network on the pairs of the scene graph and the
        alignment, returns the Reconstruction (nothing exported yet) kept under `folder`."""
        from dust3r_jax import global_align
        from dust3r_jax.inference import inference
        from dust3r_jax.pairs import make_pairs

        progress = progress or (lambda fraction, message: None)
        options.check()
        paths = check_uploads(uploads, self.limits)
        progress(0.0, "reading images")
        images = load_uploads(paths, self.image_size)
        graph = options.graph(len(images))
        pairs = make_pairs(images, scene_graph=graph, symmetrize=True)
        timings = {}
        with self._lock:
            start = time.perf_counter()
            self.inference_runs += 1
            output = inference(pairs, self.model, self.params, batch_size=options.batch_size, verbose=False,
                               progress=lambda done, total: progress(0.05 + 0.5 * done / total,
                                                                     f"network: {done}/{total} pairs"))
            timings["inference"] = time.perf_counter() - start
            start = time.perf_counter()
            self.alignment_runs += 1
            progress(0.55, "global alignment")
            if len(images) == 2:
                scene = global_align(output, mode="pair")
            else:
                scene = global_align(output, mode="pointcloud", init="mst", niter=options.niter,
                                     schedule=options.schedule, lr=0.01,
                                     progress=lambda done, total: progress(
                                         0.55 + 0.4 * done / total, f"global alignment: {done}/{total} iterations"))
            timings["alignment"] = time.perf_counter() - start
        progress(0.95, "export")
        summary = {"images": len(paths), "pairs": len(pairs), "graph": graph, "timings": timings,
                   "size": tuple(int(s) for s in images[0]["true_shape"][0][::-1]),
                   "loss": float(getattr(scene, "loss", float("nan")))}
        return Reconstruction(scene, images, folder, summary)
