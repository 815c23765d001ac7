"""The training config's fields and defaults (the official recipe), shared by `configs/train_*.py`.

Every key a user can override with `--config.a.b=value` exists here; an unknown key is an error.
"""
import ml_collections

from dust3r_jax.data.sources import SOURCE_NAMES
from dust3r_jax.model_config import VITL_BASE_DECODER
from dust3r_jax.train.sharding import DEFAULT_RULES

TRAIN_CRITERION = "ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)"
TEST_CRITERION = "Regr3D_ScaleShiftInv(L21, gt_scale=True)"

# the published trunk (ViT-Large encoder, ViT-Base decoder, RoPE100), stated once in model_config
FULL_SIZE_MODEL = VITL_BASE_DECODER


def base_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.init_from = ""           # CroCo v2 or DUSt3R checkpoint (.pth / HF folder / converted dir)
    c.train_criterion = TRAIN_CRITERION
    c.test_criterion = TEST_CRITERION
    c.max_steps = 0            # > 0: stop after that many optimiser steps (schedule still by epochs)
    c.log_every = 10           # optimiser steps between log lines

    # model_config(**model): training mode takes landscape arrays + true_shape
    c.model = ml_collections.ConfigDict(dict(FULL_SIZE_MODEL, head_type="linear", img_size=(224, 224),
                                             patch_embed_cls="PatchEmbedDust3R", landscape_only=True,
                                             dtype="float32",
                                             freeze="none"))  # 'none' | 'mask' | 'encoder': frozen params get no update

    c.data = ml_collections.ConfigDict()
    c.data.source = "datasets"  # 'datasets' (train_dataset / test_dataset strings) or 'synthetic'
    c.data.train_dataset = ""
    c.data.test_dataset = ""
    # {class name: folder} for strings without ROOT ('' = none); every name is a key, so that
    # `--config.data.roots.Co3d=DIR` is typed and a misspelt name is an error
    c.data.roots = ml_collections.ConfigDict({name: "" for name in SOURCE_NAMES})
    c.data.batch_size = 128     # GLOBAL pairs per micro-batch (official: 16 per GPU x 8 GPUs)
    c.data.synthetic = ml_collections.ConfigDict(dict(
        train_pairs=64, test_pairs=8, resolutions=((32, 32),), seed=0))

    c.optim = ml_collections.ConfigDict(dict(
        lr=1e-4, min_lr=1e-6, warmup_epochs=10.0, epochs=100, weight_decay=0.05,
        b1=0.9, b2=0.95, eps=1e-8, accum_iter=1,
    ))

    c.mesh = ml_collections.ConfigDict()
    c.mesh.shape = (-1, 1, 1)   # (data, fsdp, tensor); -1 = the remaining devices
    c.mesh.logical_axis_rules = DEFAULT_RULES

    c.checkpoint = ml_collections.ConfigDict(dict(every_steps=0, every_epochs=1, keep=2, async_save=True))
    c.eval = ml_collections.ConfigDict(dict(every_steps=0, at_end=True))

    # multi-host: num_processes > 1 (explicit) or auto=True (TPU pods / SLURM detection)
    c.distributed = ml_collections.ConfigDict(dict(
        coordinator_address="", num_processes=1, process_id=0, auto=False, cpu_collectives="gloo"))
    return c


def official_mix(size, resolution, datasets):
    """'N @ D1 + N @ D2 + ...' with `resolution=...` and `transform=ColorJitter` added to each."""
    return " + ".join(f"{size} @ {name}({args}, transform=ColorJitter, resolution={resolution})"
                      for name, args in datasets)


# the published training mixtures (the official README's training section), minus the unreleased internal dataset;
# ARKitScenes' missing split is read as split='train'
TRAIN_DATASETS = (
    ("Habitat", "1_000_000, split='train', aug_crop=16"),
    ("BlendedMVS", "split='train', aug_crop=16"),
    ("MegaDepth", "split='train', aug_crop=16"),
    ("ARKitScenes", "split='train', aug_crop=256"),
    ("Co3d", "split='train', aug_crop=16, mask_bg='rand'"),
    ("StaticThings3D", "aug_crop=256, mask_bg='rand'"),
    ("ScanNetpp", "split='train', aug_crop=256"),
)
