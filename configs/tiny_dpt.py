"""A tiny-trunk DPT model for tests (the DPT head itself has fixed widths, ~19.4M params each)."""
import ml_collections

from dust3r_jax.model_config import model_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "tiny_dpt"
    config.model = model_config(
        enc_embed_dim=32, enc_depth=2, enc_num_heads=2,
        dec_embed_dim=32, dec_depth=10, dec_num_heads=2, head_type="dpt",
    )
    return config
