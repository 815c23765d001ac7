"""DUSt3R_ViTLarge_BaseDecoder_512_dpt: the released 512 dpt model (ViT-L encoder, ViT-B decoder).

Its checkpoint's args.model names patch_embed_cls='ManyAR_PatchEmbed'; for inference the official
load_model (and ours) builds PatchEmbedDust3R with landscape_only=False, as below.
"""
import ml_collections

from dust3r_jax.model_config import model_config


def get_config():
    config = ml_collections.ConfigDict()
    config.name = "DUSt3R_ViTLarge_BaseDecoder_512_dpt"
    config.model = model_config(
        enc_embed_dim=1024, enc_depth=24, enc_num_heads=16,
        dec_embed_dim=768, dec_depth=12, dec_num_heads=12,
        pos_embed="RoPE100", img_size=(512, 512), head_type="dpt",
        patch_embed_cls="PatchEmbedDust3R", landscape_only=False,
    )
    return config
