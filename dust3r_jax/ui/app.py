"""The gradio page of `dust3r-jax ui`: the official demo's controls, on `session.Engine`.

Inputs: images (one is paired with itself), scene graph (window / reference image controls shown
only for the graphs that use them), alignment schedule and iterations, Run. Outputs: the GLB with
camera frusta in a 3D view, a gallery of image / depth / confidence per image, downloads of
scene.glb, cameras.json and colmap.zip. The post-processing controls (minimum confidence, camera
size, point cloud or mesh, mask sky, clean-up, transparent cameras) re-export the scene kept in
the session's state: no network, no alignment.

API (gradio_client): `/reconstruct` takes the files and every control and returns the outputs;
`/reexport` takes the post-processing controls and re-exports the session's last reconstruction.

Files: gradio's uploads and every output live under one root folder (gradio's cache,
GRADIO_TEMP_DIR, is set to it): outputs in `root/session-<id>/`, removed with the session's
uploads when the browser tab closes (the page's unload event) or when gradio drops the session's
state; `serve` removes the whole root when the server stops.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import tempfile
import threading
import traceback
from pathlib import Path

import gradio as gr

from dust3r_jax.errors import InputError
from dust3r_jax.shipped import default_min_conf_thr
from dust3r_jax.ui.session import MAX_ITERATIONS, Engine, Reconstruction, RunOptions, ViewOptions, window_bounds

GRAPH_CHOICES = [("complete: all possible image pairs", "complete"), ("swin: sliding window", "swin"),
                 ("logwin: sliding window, offsets 1, 2, 4, ...", "logwin"), ("oneref: match one image with all", "oneref")]


def _user_errors(fn):
    """Problems reach the page as one readable line (gradio's error toast, or the client's
    AppError), never as a traceback; unexpected errors print theirs on the server's console."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except InputError as err:
            raise gr.Error(str(err), print_exception=False) from None
        except Exception as err:  # a bug or an exhausted machine: say so, keep serving
            traceback.print_exc()
            raise gr.Error(f"internal error ({type(err).__name__}: {err}); the server's log has the details",
                           print_exception=False) from None
    return wrapper


class Sessions:
    """Per-session folders under `root` and the uploads each session used."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._uploads: dict[Path, set[str]] = {}
        self._lock = threading.Lock()

    def folder(self, request: gr.Request) -> Path:
        session = request.session_hash or ""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", session):
            raise InputError("this request carries no valid session id; reload the page")
        folder = self.root / f"session-{session}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def used(self, request: gr.Request, uploads: list) -> None:
        with self._lock:
            for path in uploads or []:
                self._uploads.setdefault(Path(path), set()).add(request.session_hash)

    def end(self, request: gr.Request) -> None:
        """Removes the session's folder and the uploads no other session uses."""
        session = request.session_hash or ""
        if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", session):
            shutil.rmtree(self.root / f"session-{session}", ignore_errors=True)
        with self._lock:
            for path, users in list(self._uploads.items()):
                users.discard(session)
                if not users:
                    del self._uploads[path]
                    if path.resolve().is_relative_to(self.root.resolve()):
                        path.unlink(missing_ok=True)


def _status(engine: Engine, reconstruction: Reconstruction, points: int, view: ViewOptions, what: str) -> str:
    s = reconstruction.summary
    width, height = s["size"]
    loss = f", final loss {s['loss']:.4g}" if s["loss"] == s["loss"] else ""
    return (f"**{what}.** {s['images']} image(s) at {width}x{height}, {s['pairs']} pairs ({s['graph']} graph): "
            f"network {s['timings']['inference']:.1f} s, alignment {s['timings']['alignment']:.1f} s{loss}.  \n"
            f"{points} points above confidence {view.min_conf_thr:g}"
            f"{', sky masked' if view.mask_sky else ''}{', cleaned up' if view.clean_depth else ''}; "
            f"{'mesh' if view.as_mesh else 'point cloud'}.  \n"
            f"Network runs in this process: {engine.inference_runs}; alignment runs: {engine.alignment_runs}; "
            f"exports of this scene: {reconstruction.exports}.")


def build_app(engine: Engine, root: Path) -> gr.Blocks:
    """The page. Sets GRADIO_TEMP_DIR to `root` (gradio's components read it when built)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(root)
    sessions = Sessions(root)
    limits = engine.limits

    def view_options(min_conf, cam_size, as_pointcloud, mask_sky, clean_depth, transparent_cams):
        return ViewOptions(min_conf_thr=float(min_conf), camera_scale=float(cam_size), as_mesh=not as_pointcloud,
                           mask_sky=bool(mask_sky), clean_depth=bool(clean_depth),
                           transparent_cams=bool(transparent_cams))

    def outputs_of(reconstruction, exported, view, what):
        paths = (str(exported.glb), str(exported.cameras), str(exported.colmap_zip))
        return (str(exported.glb), *(gr.DownloadButton(value=p, interactive=True) for p in paths),
                _status(engine, reconstruction, exported.points, view, what))

    @_user_errors
    def reconstruct(files, schedule, niter, scene_graph, window, ref_image, min_conf, cam_size, as_pointcloud,
                    mask_sky, clean_depth, transparent_cams, request: gr.Request, progress=gr.Progress()):
        sessions.used(request, files)
        folder = sessions.folder(request)
        run = Path(tempfile.mkdtemp(prefix="run-", dir=folder))
        options = RunOptions(scene_graph=scene_graph, window=int(window), ref_image=int(ref_image),
                             schedule=schedule, niter=int(niter) if niter is not None else -1)
        reconstruction = engine.reconstruct(files, options, run,
                                            progress=lambda fraction, message: progress(fraction, desc=message))
        view = view_options(min_conf, cam_size, as_pointcloud, mask_sky, clean_depth, transparent_cams)
        exported = reconstruction.export(view)
        gallery = [(str(path), caption) for path, caption in reconstruction.gallery()]
        for previous in folder.glob("run-*"):  # the session's earlier result, replaced by this one
            if previous != run:
                shutil.rmtree(previous, ignore_errors=True)
        print(f"[dust3r-jax ui] network run {engine.inference_runs}: {reconstruction.summary['images']} images, "
              f"{reconstruction.summary['pairs']} pairs", flush=True)
        return (reconstruction, gallery, *outputs_of(reconstruction, exported, view, "Reconstructed"))

    @_user_errors
    def reexport(reconstruction, min_conf, cam_size, as_pointcloud, mask_sky, clean_depth, transparent_cams):
        if reconstruction is None:
            raise InputError("nothing to re-export yet: upload images and press Run first")
        view = view_options(min_conf, cam_size, as_pointcloud, mask_sky, clean_depth, transparent_cams)
        exported = reconstruction.export(view)
        return outputs_of(reconstruction, exported, view, "Re-exported without running the network")

    def graph_controls(files, scene_graph):
        count = max(1, len(files or []))
        default, top = window_bounds(scene_graph, count)
        window = gr.Slider(value=default, minimum=1, maximum=max(top, 2), step=1, visible=scene_graph in ("swin", "logwin"))
        ref_image = gr.Slider(value=0, minimum=0, maximum=max(count - 1, 1), step=1, visible=scene_graph == "oneref")
        return window, ref_image

    def end_session(request: gr.Request):
        sessions.end(request)

    def drop_state(reconstruction):
        if reconstruction is not None:
            shutil.rmtree(reconstruction.folder, ignore_errors=True)

    with gr.Blocks(title="DUSt3R-JAX demo") as demo:
        state = gr.State(None, delete_callback=drop_state)
        gr.Markdown(f"## DUSt3R-JAX: 3D reconstruction from photos\n"
                    f"Weights `{Path(str(engine.weights)).name}`, images resized to {engine.image_size} pixels. "
                    f"At most {limits.max_images} images of {limits.max_file_mb:g} MB each; one image is paired "
                    f"with itself. Files stay in a temporary folder removed when you close this page.")
        files = gr.File(file_count="multiple", label="Images", elem_id="images")
        with gr.Row():
            schedule = gr.Dropdown(["linear", "cosine"], value="linear", label="Schedule",
                                   info="for the global alignment", elem_id="schedule")
            niter = gr.Number(value=300, precision=0, minimum=0, maximum=MAX_ITERATIONS, label="Iterations",
                              info="of the global alignment (more than two images)", elem_id="niter")
            scene_graph = gr.Dropdown(GRAPH_CHOICES, value="complete", label="Scene graph",
                                      info="which image pairs the network sees", elem_id="scene_graph")
            window = gr.Slider(label="Window size", value=1, minimum=1, maximum=2, step=1, visible=False,
                               elem_id="window")
            ref_image = gr.Slider(label="Reference image", value=0, minimum=0, maximum=1, step=1, visible=False,
                                  elem_id="ref_image")
        run_button = gr.Button("Run", variant="primary", elem_id="run")
        with gr.Row():
            min_conf = gr.Slider(label="Minimum confidence", value=default_min_conf_thr(engine.weights),
                                 minimum=1.0, maximum=20.0, step=0.1,
                                 elem_id="min_conf")
            cam_size = gr.Slider(label="Camera size (x automatic)", value=1.0, minimum=0.1, maximum=5.0, step=0.1,
                                 elem_id="cam_size")
        with gr.Row():
            as_pointcloud = gr.Checkbox(value=False, label="As point cloud", elem_id="as_pointcloud")
            mask_sky = gr.Checkbox(value=False, label="Mask sky", elem_id="mask_sky")
            clean_depth = gr.Checkbox(value=True, label="Clean-up depth maps", elem_id="clean_depth")
            transparent_cams = gr.Checkbox(value=False, label="Transparent cameras", elem_id="transparent_cams")
        status = gr.Markdown("Upload images and press Run.", elem_id="status")
        model3d = gr.Model3D(label="Scene (scene.glb)", elem_id="scene3d", height=480)
        gallery = gr.Gallery(label="Image, depth, confidence", columns=3, elem_id="gallery")
        with gr.Row():
            download_glb = gr.DownloadButton("Download scene.glb", interactive=False, elem_id="download_glb")
            download_cameras = gr.DownloadButton("Download cameras.json", interactive=False, elem_id="download_cameras")
            download_colmap = gr.DownloadButton("Download COLMAP model (zip)", interactive=False,
                                                elem_id="download_colmap")

        view_controls = [min_conf, cam_size, as_pointcloud, mask_sky, clean_depth, transparent_cams]
        shown = [model3d, download_glb, download_cameras, download_colmap, status]
        gr.on([files.change, scene_graph.change], graph_controls, inputs=[files, scene_graph],
              outputs=[window, ref_image], api_visibility="private", queue=False)
        run_button.click(reconstruct, inputs=[files, schedule, niter, scene_graph, window, ref_image, *view_controls],
                         outputs=[state, gallery, *shown], api_name="reconstruct",
                         concurrency_limit=1, concurrency_id="reconstruct")
        gr.on([min_conf.release, cam_size.release, as_pointcloud.input, mask_sky.input, clean_depth.input,
               transparent_cams.input], reexport, inputs=[state, *view_controls], outputs=shown,
              api_name="reexport", concurrency_limit=2, concurrency_id="reexport", trigger_mode="always_last")
        demo.unload(end_session)
    return demo


def serve(engine: Engine, root: Path, host: str = "127.0.0.1", port: int = 7860, remove_root: bool = True,
          block: bool = True):
    """Builds the page and serves it; returns the Blocks when `block` is False (tests). Uploads
    larger than the engine's limit are refused by gradio itself before they reach us."""
    demo = build_app(engine, root)
    demo.queue(default_concurrency_limit=1)
    try:
        demo.launch(server_name=host, server_port=port, max_file_size=f"{engine.limits.max_file_mb:g}mb",
                    allowed_paths=[str(root)], prevent_thread_lock=not block, quiet=False,
                    footer_links=["api"])
    except BaseException:
        if remove_root:
            shutil.rmtree(root, ignore_errors=True)
        raise
    if block:
        if remove_root:
            shutil.rmtree(root, ignore_errors=True)
        print("dust3r-jax ui: stopped", file=sys.stderr)
    return demo
