"""Stage 2: 512 wide with five aspect ratios, linear head, fine-tuned from the 224 linear model.

Official: 8 GPUs x batch 4 x accum 2 (64 pairs per step), lr 1e-4 -> 1e-6, 20 warm-up of 100
epochs, 10_000 pairs of each dataset per epoch. Set `--config.init_from` to stage 1's best checkpoint.
"""
from dust3r_jax.train.defaults import TRAIN_DATASETS, base_config, official_mix

RESOLUTIONS_512 = "[(512, 384), (512, 336), (512, 288), (512, 256), (512, 160)]"


def get_config():
    c = base_config()
    c.model.update(head_type="linear", img_size=(512, 512), patch_embed_cls="ManyAR_PatchEmbed")
    c.data.train_dataset = official_mix("10_000", RESOLUTIONS_512, TRAIN_DATASETS)
    c.data.test_dataset = ("Habitat(1_000, split='val', resolution=(512,384), seed=777)"
                           " + 1_000 @ BlendedMVS(split='val', resolution=(512,384), seed=777)"
                           " + 1_000 @ MegaDepth(split='val', resolution=(512,336), seed=777)"
                           " + 1_000 @ Co3d(split='test', resolution=(512,384), seed=777)")
    c.data.batch_size = 32
    c.optim.update(lr=1e-4, min_lr=1e-6, warmup_epochs=20, epochs=100, accum_iter=2)
    c.checkpoint.every_epochs = 10
    return c
