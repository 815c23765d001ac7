"""A tiny model on the in-memory synthetic pairs: for tests, benchmarks and a first smoke run.

    dust3r-jax train --config configs/train_tiny.py --workdir /tmp/tiny
"""
from dust3r_jax.train.defaults import base_config


def get_config():
    c = base_config()
    c.model.update(enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32, dec_depth=2,
                   dec_num_heads=2, head_type="linear", img_size=(32, 32),
                   patch_embed_cls="ManyAR_PatchEmbed", patch_size=8)
    c.data.source = "synthetic"
    c.data.batch_size = 8
    c.data.synthetic.update(train_pairs=64, test_pairs=16, resolutions=((32, 16),), seed=0)
    c.optim.update(lr=1e-3, min_lr=1e-5, warmup_epochs=1, epochs=4, accum_iter=2)
    c.log_every = 1
    c.checkpoint.update(every_steps=2, keep=3)
    c.eval.every_steps = 0
    return c
