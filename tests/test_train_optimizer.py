"""The official optimiser recipe: lr schedule, AdamW arithmetic, parameter groups, freezing."""
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dust3r_jax.train import optimizer

REPO = Path(__file__).resolve().parents[1]


def _official_lr(epoch, lr, min_lr, warmup, epochs):
    """croco's `adjust_learning_rate` (croco/utils/misc.py), in float64."""
    if epoch < warmup:
        return lr * epoch / warmup
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))


def test_schedule_follows_official_formula_per_step():
    steps_per_epoch = 7
    schedule = optimizer.make_schedule(1e-4, 1e-6, 2, 5, steps_per_epoch)
    assert float(schedule(0)) == 0.0  # the very first step uses lr 0
    for k in range(0, 5 * steps_per_epoch, 3):
        # float32 evaluation (the lr optax applies) of the official float64 formula
        np.testing.assert_allclose(float(schedule(k)), _official_lr(k / steps_per_epoch, 1e-4, 1e-6, 2, 5), rtol=1e-5)
    np.testing.assert_allclose(float(schedule(2 * steps_per_epoch)), 1e-4, rtol=1e-6)  # peak after warm-up
    np.testing.assert_allclose(float(schedule(5 * steps_per_epoch)), 1e-6, rtol=1e-5)  # min_lr at the end


@pytest.mark.parametrize("name", ["train_tiny", "train_procedural", "train_224_linear", "train_512_linear",
                                  "train_512_dpt"])
def test_schedule_of_every_train_config_is_the_official_one_at_every_step(name):
    """The schedule of each shipped training recipe, at every step of 1,000-step epochs, against
    croco's float64 formula: within 1e-5 relative, or two float32 ulps of the peak lr (the lr of
    the first warm-up steps is ~1e-7 of the peak: float32 rounding of the ramp dominates there)."""
    from dust3r_jax.train.config_overrides import load_config

    optim = load_config(REPO / "configs" / f"{name}.py").optim
    steps_per_epoch = 1000
    schedule = optimizer.make_schedule(optim.lr, optim.min_lr, optim.warmup_epochs, optim.epochs, steps_per_epoch)
    steps = np.arange(int(optim.epochs) * steps_per_epoch + 1)
    got = np.asarray(schedule(jnp.asarray(steps)))
    want = np.array([_official_lr(k / steps_per_epoch, optim.lr, optim.min_lr, optim.warmup_epochs, optim.epochs)
                     for k in steps])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2.0 ** -22 * optim.lr)


def _optim_config(**kw):
    base = dict(lr=1e-3, min_lr=1e-5, warmup_epochs=1.0, epochs=3, weight_decay=0.05, b1=0.9, b2=0.95,
                eps=1e-8, accum_iter=1)
    base.update(kw)
    return ml_collections.ConfigDict(base)


def _params():
    rng = np.random.default_rng(0)
    return {
        "patch_embed": {"proj": {"kernel": rng.normal(size=(2, 2, 3, 4)).astype(np.float32),
                                 "bias": rng.normal(size=(4,)).astype(np.float32)}},
        "enc_blocks_0": {"mlp": {"fc1": {"kernel": rng.normal(size=(4, 8)).astype(np.float32)}}},
        "enc_norm": {"scale": np.ones(4, np.float32), "bias": np.zeros(4, np.float32)},
        "dec_blocks_0": {"mlp": {"fc1": {"kernel": rng.normal(size=(4, 8)).astype(np.float32),
                                         "bias": rng.normal(size=(8,)).astype(np.float32)}}},
    }


def _torch_adamw(params, grads_per_step, lrs, wd, decays, b1=0.9, b2=0.95, eps=1e-8):
    """PyTorch's AdamW algorithm (decay first, then the bias-corrected Adam step), in numpy."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        for k in p:
            if decays[k]:
                p[k] = p[k] * (1 - lr * wd)
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            denom = np.sqrt(v[k]) / math.sqrt(1 - b2 ** t) + eps
            p[k] = p[k] - lr / (1 - b1 ** t) * m[k] / denom
    return p


def test_adamw_matches_pytorch_algorithm_with_official_groups():
    params = _params()
    cfg = _optim_config()
    tx, schedule = optimizer.make_optimizer(cfg, steps_per_epoch=2, params=params)
    rng = np.random.default_rng(1)
    grads_per_step = [jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), params) for _ in range(4)]
    state, p = tx.init(params), params
    for grads in grads_per_step:
        updates, state = tx.update(grads, state, p)
        p = jax.tree.map(lambda a, u: a + u, p, updates)
    flat = lambda t: {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(t)[0]}
    decays = flat(optimizer.decay_mask(params))
    want = _torch_adamw(flat(params), [flat(g) for g in grads_per_step], [float(schedule(k)) for k in range(4)],
                        cfg.weight_decay, decays)
    for key, value in flat(p).items():
        np.testing.assert_allclose(value, want[key], rtol=1e-5, atol=1e-7, err_msg=key)


def test_decay_group_is_everything_but_biases_and_1d():
    groups = optimizer.decay_mask(_params())
    assert groups["patch_embed"]["proj"]["kernel"] and groups["dec_blocks_0"]["mlp"]["fc1"]["kernel"]
    assert not groups["patch_embed"]["proj"]["bias"] and not groups["enc_norm"]["scale"]
    assert not groups["dec_blocks_0"]["mlp"]["fc1"]["bias"]


def test_freeze_encoder_leaves_patch_embed_and_encoder_blocks_unchanged():
    params = _params()
    tx, _ = optimizer.make_optimizer(_optim_config(), steps_per_epoch=1, params=params, freeze="encoder")
    grads = jax.tree.map(jnp.ones_like, params)
    state = tx.init(params)
    for _ in range(2):  # the first step has lr 0
        updates, state = tx.update(grads, state, params)
    assert not np.any(np.asarray(updates["patch_embed"]["proj"]["kernel"]))
    assert not np.any(np.asarray(updates["enc_blocks_0"]["mlp"]["fc1"]["kernel"]))
    assert np.all(np.asarray(updates["enc_norm"]["scale"]) != 0)  # croco does not freeze enc_norm
    assert np.all(np.asarray(updates["dec_blocks_0"]["mlp"]["fc1"]["kernel"]) != 0)


def test_unknown_freeze_mode_is_rejected():
    with pytest.raises(ValueError, match="freeze='decoder'"):
        optimizer.trainable_labels(_params(), "decoder")


@pytest.mark.parametrize("head_type,patch_embed,official", [
    ("linear", "PatchEmbedDust3R", {"decay": (293, 531_628_800), "no_decay": (584, 713_984)}),
    pytest.param("dpt", "ManyAR_PatchEmbed", {"decay": (359, 570_443_520), "no_decay": (642, 727_688)},
                 marks=pytest.mark.slow),
])
def test_full_size_param_groups_match_official_counts(head_type, patch_embed, official):
    """README 3.1 counts; the official decay group also holds croco's `mask_token` (1x1x768, never
    updated in DUSt3R), which our model only has if it declares it."""
    from dust3r_jax.train import sharding as shd
    from dust3r_jax.train.defaults import FULL_SIZE_MODEL
    from dust3r_jax.train.loop import build_model
    from dust3r_jax.train.state import abstract_params_and_shardings

    model = build_model(ml_collections.ConfigDict(dict(FULL_SIZE_MODEL, head_type=head_type,
                                                       patch_embed_cls=patch_embed)))
    mesh = shd.make_mesh((1, 1, 1), jax.devices()[:1])
    abstract, _, _ = abstract_params_and_shardings(model, mesh, shd.DEFAULT_RULES, (32, 32))
    counts = optimizer.param_group_counts(abstract)
    decay = official["decay"]
    if "mask_token" not in abstract:
        decay = (decay[0] - 1, decay[1] - 768)
    assert counts == {"decay": decay, "no_decay": official["no_decay"]}
