"""A tiny linear-head model for tests and smoke runs (random weights)."""
import ml_collections

from dust3r_jax.model_config import model_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "tiny_linear"
    config.model = model_config(
        enc_embed_dim=32, enc_depth=2, enc_num_heads=2,
        dec_embed_dim=32, dec_depth=2, dec_num_heads=2, head_type="linear",
    )
    return config
