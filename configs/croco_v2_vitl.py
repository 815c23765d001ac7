"""CroCo v2 pre-training trunk (CroCo_V2_ViTLarge_BaseDecoder): DUSt3R stage-1 initialisation.

Importing a CroCo checkpoint gives a DUSt3R model whose second decoder is a copy of the first and
whose heads are random (the official training does the same through load_state_dict).
"""
import ml_collections

from dust3r_jax.model_config import VITL_BASE_DECODER, model_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "CroCo_V2_ViTLarge_BaseDecoder"
    config.model = model_config(
        **VITL_BASE_DECODER, img_size=(224, 224), head_type="linear",
    )
    return config
