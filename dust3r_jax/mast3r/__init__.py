"""MASt3R on top of the DUSt3R stack: dense matching of its descriptors (`matching`). The network
itself is `dust3r_jax.model.AsymmetricMASt3R` (the catmlp+dpt head), loaded by `load_model`."""
