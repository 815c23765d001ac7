"""DUSt3R_ViTLarge_BaseDecoder_224_linear: the released 224 linear model (ViT-L encoder, ViT-B decoder).

Its checkpoint's args.model names patch_embed_cls='PatchEmbedDust3R'; for inference the official
load_model (and ours) builds PatchEmbedDust3R with landscape_only=False, as below.
"""
import ml_collections

from dust3r_jax.model_config import VITL_BASE_DECODER, model_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "DUSt3R_ViTLarge_BaseDecoder_224_linear"
    config.model = model_config(
        **VITL_BASE_DECODER, img_size=(224, 224), head_type="linear",
        patch_embed_cls="PatchEmbedDust3R", landscape_only=False,
    )
    return config
