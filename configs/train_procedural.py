"""The model shipped in the package: a small DUSt3R trained from scratch on procedural scenes.

Sized for a 2-core CPU: ViT encoder 192 wide x 6 deep, decoder 128 x 4, 16-pixel patches, linear
head, images 128 pixels wide (32-48 tokens; 8-pixel patches were 10x slower per step here).
Data: `dust3r-jax build-data --dataset procedural` (2,000 training scenes of 8 views; held-out
test scenes use disjoint seeds), then

    dust3r-jax train --config configs/train_procedural.py --workdir runs/procedural \\
        --config.data.roots.Procedural=data/procedural

Same criterion and AdamW recipe as the official trainer; 10 epochs of 8,000 pairs at batch 16
(5,000 steps: about an hour on the 2-core CPU); pairs whose views share at least 25% of
their pixels. `dust3r-jax export-model` then writes the packaged params (README, "The shipped
model, reproduced").
"""
from dust3r_jax.train.defaults import base_config

RESOLUTIONS = [(128, 96), (128, 80), (128, 64)]


def get_config():
    c = base_config()
    c.seed = 0
    c.model.update(enc_embed_dim=192, enc_depth=6, enc_num_heads=3, dec_embed_dim=128, dec_depth=4,
                   dec_num_heads=4, head_type="linear", img_size=(128, 128), patch_size=16,
                   patch_embed_cls="PatchEmbedDust3R", landscape_only=True, pos_embed="RoPE100")
    c.data.source = "datasets"
    c.data.roots.Procedural = "data/procedural"
    c.data.train_dataset = (f"8_000 @ Procedural(split='train', aug_crop=16, min_overlap=0.25, "
                            f"resolution={RESOLUTIONS}, transform=ColorJitter)")
    c.data.test_dataset = "256 @ Procedural(split='test', resolution=(128, 96), seed=777)"
    c.data.batch_size = 16
    c.optim.update(lr=3e-4, min_lr=3e-6, warmup_epochs=1, epochs=10, weight_decay=0.05, accum_iter=1)
    c.log_every = 20
    c.checkpoint.update(every_steps=250, every_epochs=1, keep=3, async_save=False)
    c.eval.update(every_steps=500, at_end=True)
    return c
