"""`dust3r-jax ui`: the web demo (gradio) on http://127.0.0.1:7860 by default.

    pip install -e ".[ui]"
    dust3r-jax ui                                   # the model shipped in the package
    dust3r-jax ui --weights naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt --image-size 512

The page is described in `dust3r_jax.ui.app`; the pipeline behind it in `dust3r_jax.ui.session`.
"""
import argparse
import shutil
import signal
import tempfile
from pathlib import Path

from dust3r_jax.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from dust3r_jax.ui.session import Limits

    parser.add_argument("--weights", default=None,
                        help="official .pth, Hugging Face folder, converted folder, Hub id or shipped model name "
                             "(default: the shipped model 'procedural')")
    parser.add_argument("--image-size", type=int, default=None,
                        help="network resolution (224 or 512 for the released weights; >= 16); default: the "
                             "model's own training size (config img_size)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 shares it)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--max-images", type=int, default=Limits.max_images,
                        help=f"most images per reconstruction (default {Limits.max_images}: fits a 24 GB GPU at 512)")
    parser.add_argument("--max-file-mb", type=float, default=Limits.max_file_mb,
                        help=f"largest upload per file in MB (default {Limits.max_file_mb:g})")
    parser.add_argument("--tmp-dir", default=None,
                        help="where the server's temporary folder is made (default: the system's); it holds "
                             "uploads and results and is removed when the server stops")


def run(args) -> int:
    if args.image_size is not None and args.image_size < 16:
        raise InputError(f"--image-size {args.image_size}: must be at least 16 (one patch)")
    if args.max_images < 1 or not args.max_file_mb > 0:
        raise InputError(f"--max-images {args.max_images} / --max-file-mb {args.max_file_mb}: must be positive")
    if not 0 <= args.port < 65536:
        raise InputError(f"--port {args.port}: expected 0..65535")
    if args.tmp_dir is not None and not Path(args.tmp_dir).is_dir():
        raise InputError(f"--tmp-dir {args.tmp_dir}: no such folder")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise InputError("the web demo needs gradio: pip install -e \".[ui]\"") from None
    from dust3r_jax.hub import resolve_weights
    from dust3r_jax.shipped import DEFAULT_MODEL
    from dust3r_jax.ui.app import serve
    from dust3r_jax.ui.session import Engine, Limits

    weights = DEFAULT_MODEL if args.weights is None else resolve_weights(args.weights)
    engine = Engine(weights, image_size=args.image_size,
                    limits=Limits(max_images=args.max_images, max_file_mb=args.max_file_mb))
    print(f"dust3r-jax ui: weights {weights}, images at {engine.image_size} pixels", flush=True)
    root = Path(tempfile.mkdtemp(prefix="dust3r-jax-ui-", dir=args.tmp_dir))
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server as Ctrl-C does: root removed
    try:
        serve(engine, root, host=args.host, port=args.port)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt
