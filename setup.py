"""dust3r-jax: DUSt3R in JAX/Flax, numerically identical to the official PyTorch release."""
from setuptools import find_packages, setup

# Runtime: what `import dust3r_jax` and `dust3r-jax reconstruct` need. PyTorch is never needed:
# official checkpoints are read by our own restricted unpickler (dust3r_jax/checkpoints/torch_pickle.py).
INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.4",
    "orbax-checkpoint>=0.11",
    "numpy>=1.26",
    "ml-collections>=1.0",
    # the private FlagValues on which ml_collections.config_flags parses `--config.a.b=value`
    "absl-py>=1.0",
    "safetensors>=0.4",
    # bfloat16 tensors of checkpoints (safetensors.numpy cannot hold them); also a JAX dependency
    "ml-dtypes>=0.4",
    "pillow>=10",
    # minimum spanning tree and KD-trees for the global-alignment initialisation and matching:
    # scipy's are the reference implementations the official code calls.
    "scipy>=1.11",
    "tqdm>=4.60",
    # GLB scene export: writing glTF binaries by hand is a format of its own.
    "trimesh>=4",
    # PnP-RANSAC (SQPNP) for the two-view PairViewer and for poses the spanning tree cannot
    # reach: the solver the official aligner calls.
    "opencv-python-headless>=4.8",
    # Hub ids in from_pretrained / --weights: download and cache as the official from_pretrained does
    "huggingface_hub>=0.23",
    # the procedural scenes' textures are the photographs scikit-image ships (no download), and the
    # real stereo pair with ground-truth disparity of the evaluation (stereo_motorcycle)
    "scikit-image>=0.21",
    # the demo's comparison pictures and the training curves
    "matplotlib>=3.7",
]

EXTRAS = {
    # GPU support is optional: `pip install -e .[cuda]`.
    "cuda": ["jax[cuda12]"],
    # Training data: TFDS builders write array_record and are read back with grain, no TensorFlow.
    # OpenEXR: the depth maps of BlendedMVS, MegaDepth, StaticThings3D, Waymo and Habitat are EXR,
    # which neither Pillow nor opencv-python-headless 5 reads.
    "data": ["tensorflow-datasets>=4.9", "grain>=0.2", "array-record>=0.5", "OpenEXR>=3.3"],
    # the web demo, `dust3r-jax ui` (gradio 6's event API: api_visibility, footer_links)
    "ui": ["gradio>=6"],
}
# pycolmap: the reconstruct tests read our COLMAP export back with COLMAP's own reader.
# gradio_client and playwright drive the web demo (playwright with Debian's chromium: no browser download).
EXTRAS["test"] = ["pytest>=7", "pycolmap>=3.10", "gradio_client>=1", "playwright>=1.40"] + EXTRAS["data"] + EXTRAS["ui"]
EXTRAS["all"] = sorted({d for k, v in EXTRAS.items() if k != "cuda" for d in v})

setup(
    name="dust3r-jax",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.11",
    packages=find_packages(include=["dust3r_jax", "dust3r_jax.*"]),
    # the model shipped in the package (dust3r_jax/models/<name>/: config.json, model.safetensors, card)
    package_data={"dust3r_jax": ["models/*/*.json", "models/*/*.safetensors", "models/*/*.md"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["dust3r-jax=dust3r_jax.cli:main"]},
)
