"""Stage 1 of the published recipe: 224x224, linear head, initialised from CroCo v2 ViT-L/ViT-B.

Official: 8 GPUs x batch 16 (128 pairs per step, 256 after symmetrisation), lr 1e-4 -> min 1e-6,
10 warm-up epochs of 100, 100_000 pairs of each dataset per epoch (6,250 steps).
Set `--config.init_from=/path/CroCo_V2_ViTLarge_BaseDecoder.pth` and `--config.data.roots.<Name>=DIR`.
"""
from dust3r_jax.train.defaults import TRAIN_DATASETS, base_config, official_mix


def get_config():
    c = base_config()
    c.model.update(head_type="linear", img_size=(224, 224), patch_embed_cls="PatchEmbedDust3R")
    c.init_from = ""  # CroCo_V2_ViTLarge_BaseDecoder.pth: dec_blocks copied to dec_blocks2, heads random
    c.data.train_dataset = official_mix("100_000", 224, TRAIN_DATASETS)
    c.data.test_dataset = ("Habitat(1_000, split='val', resolution=224, seed=777)"
                           " + 1_000 @ BlendedMVS(split='val', resolution=224, seed=777)"
                           " + 1_000 @ MegaDepth(split='val', resolution=224, seed=777)"
                           " + 1_000 @ Co3d(split='test', mask_bg='rand', resolution=224, seed=777)")
    c.data.batch_size = 128
    c.optim.update(lr=1e-4, min_lr=1e-6, warmup_epochs=10, epochs=100, accum_iter=1)
    c.checkpoint.every_epochs = 5
    return c
