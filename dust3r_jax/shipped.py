"""Models shipped inside the package, by name: `load_model("procedural")` works offline.

Each is an official-format Hugging Face folder (`config.json` + `model.safetensors`, see
`dust3r_jax.hf_export`) under `dust3r_jax/models/<name>/`, next to its MODEL_CARD.md. The weights'
SHA-256 is recorded here: a corrupted or truncated file is refused with one line before anything
is read from it.
"""
import hashlib
from pathlib import Path

from dust3r_jax.errors import CheckpointError, InputError

MODELS_DIR = Path(__file__).resolve().parent / "models"

# name -> sha256 of model.safetensors (written by `dust3r-jax export-model`)
SHIPPED = {
    "procedural": "f3fd5ab1e132f02b1599efbddeb7c0052e853d57df6ee5aa49a8f717bf1a78ca",
}
DEFAULT_MODEL = "procedural"

# The confidence threshold of the official demo, calibrated for the released weights.
OFFICIAL_MIN_CONF_THR = 3.0
# A shipped model's own: the 30th percentile of its confidences on held-out scenes (MODEL_CARD.md),
# so that a point cloud keeps its 70% most confident points.
MIN_CONF_THR = {
    "procedural": 1.09,
}


def default_min_conf_thr(weights):
    """The confidence threshold to use with `weights` (a shipped name, None for the default model,
    or anything else, which gets the official demo's)."""
    name = DEFAULT_MODEL if weights is None else str(weights)
    return MIN_CONF_THR.get(name, OFFICIAL_MIN_CONF_THR)


def available():
    """Names of the shipped models."""
    return sorted(SHIPPED)


def is_model_name(value):
    """True for a string that names a model rather than a path (no separator, no suffix)."""
    return isinstance(value, str) and "/" not in value and "\\" not in value and "." not in value


def shipped_folder(name, models_dir=MODELS_DIR):
    """The checked folder of shipped model `name` (under `models_dir`, the package's by default).

    Raises InputError for an unknown name (listing the known ones) and CheckpointError when the
    weights file is missing or does not match its recorded checksum.
    """
    if name not in SHIPPED:
        raise InputError(f"model {name!r}: not a file or folder, and not a shipped model "
                         f"(shipped: {', '.join(available())})")
    folder = Path(models_dir) / name
    weights = folder / "model.safetensors"
    if not weights.is_file() or not (folder / "config.json").is_file():
        raise CheckpointError(f"shipped model {name!r}: {folder} is incomplete (reinstall dust3r-jax)")
    digest = sha256_of(weights)
    if digest != SHIPPED[name]:
        raise CheckpointError(f"shipped model {name!r}: {weights} fails its checksum (sha256 {digest[:12]}..., "
                              f"expected {SHIPPED[name][:12]}...); the file is corrupted: reinstall dust3r-jax")
    return folder


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
