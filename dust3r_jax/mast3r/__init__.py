"""MASt3R on top of the DUSt3R stack: dense matching of its descriptors (`matching`) and the sparse
global alignment (MASt3R-SfM): `sparse_align` (the functional core, `align.py`: canonical
views, kinematic tree, the two jitted stages) and the official `sparse_global_alignment` (runs the
network first, `sparse_ga.py`). The network itself is `dust3r_jax.model.AsymmetricMASt3R` (the
catmlp+dpt head), loaded by `load_model`."""
from dust3r_jax.mast3r.align import SparseAlignOptions, sparse_align  # noqa: F401
from dust3r_jax.mast3r.sparse_ga import sparse_global_alignment  # noqa: F401
from dust3r_jax.mast3r.sparse_scene import SparseScene  # noqa: F401
