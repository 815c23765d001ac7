"""AdamW with the official parameter groups, the official learning-rate schedule, and freezing.

Official recipe (dust3r/training.py with croco's utils/misc.py): PyTorch AdamW, betas (0.9, 0.95), eps 1e-8,
weight decay 0.05 decoupled and scaled by the current lr; no decay for parameters with one
dimension or named `*.bias` (biases and LayerNorm weights); lr warm-up linear from exactly 0 then
half-cycle cosine down to `min_lr`, both in fractional epochs and evaluated per optimiser step.

optax's `adamw` computes `-lr * (m_hat / (sqrt(v_hat) + eps) + wd * p)`, which equals PyTorch's
"decay first, then Adam step" because the Adam part does not depend on `p`.
"""
import math

import jax
import jax.numpy as jnp
import optax

from dust3r_jax.errors import ConfigError

# croco's `set_freeze`: which top-level modules each mode freezes (note: not `enc_norm`).
FROZEN_PREFIXES = {
    "none": (),
    "mask": ("mask_token",),
    "encoder": ("mask_token", "patch_embed", "enc_blocks"),
}


def make_schedule(lr, min_lr, warmup_epochs, epochs, steps_per_epoch):
    """optax schedule of the optimiser step count k: croco's `adjust_learning_rate` at fractional
    epoch k / steps_per_epoch (linear warm-up from 0 over `warmup_epochs`, then half-cycle cosine
    down to `min_lr` at `epochs`), i.e. optax's warm-up + cosine counted in steps.

    With `accum_iter` micro-batches per step, the official lr is set on micro-batch s = k * accum
    of a loader of L = steps_per_epoch * accum micro-batches: epoch + s / L = k / steps_per_epoch.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    if epochs <= warmup_epochs:
        raise ConfigError(f"optim.epochs={epochs} must exceed optim.warmup_epochs={warmup_epochs}: "
                          "the cosine decay follows the warm-up")
    return optax.warmup_cosine_decay_schedule(init_value=0.0, peak_value=lr,
                                              warmup_steps=warmup_epochs * steps_per_epoch,
                                              decay_steps=epochs * steps_per_epoch, end_value=min_lr)


def _path_names(path):
    return tuple(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _is_frozen(names, freeze):
    prefixes = FROZEN_PREFIXES[freeze]
    # module lists may be flattened as 'enc_blocks_0' (linen) or nested as ('enc_blocks', '0')
    return any(n == p or n.startswith(p + "_") for n in names[:1] for p in prefixes)


def decay_mask(params):
    """True for parameters in the decay group: more than one dimension and not a bias."""
    def decays(path, leaf):
        return bool(jnp.ndim(leaf) > 1 and _path_names(path)[-1] != "bias")
    return jax.tree_util.tree_map_with_path(decays, params)


def trainable_labels(params, freeze="none"):
    """'train' or 'frozen' per parameter, by croco's freeze mode ('none' | 'mask' | 'encoder')."""
    if freeze not in FROZEN_PREFIXES:
        raise ValueError(f"freeze={freeze!r}: expected one of {sorted(FROZEN_PREFIXES)}")
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if _is_frozen(_path_names(path), freeze) else "train", params)


def param_group_counts(params, freeze="none"):
    """{'decay': (tensors, values), 'no_decay': (tensors, values)} over trainable params (for logs/tests)."""
    counts = {"decay": [0, 0], "no_decay": [0, 0]}
    labels = jax.tree.leaves(trainable_labels(params, freeze))
    for leaf, decays, label in zip(jax.tree.leaves(params), jax.tree.leaves(decay_mask(params)), labels):
        if label == "frozen":
            continue
        group = counts["decay" if decays else "no_decay"]
        group[0] += 1
        group[1] += int(math.prod(jnp.shape(leaf)))
    return {k: tuple(v) for k, v in counts.items()}


def make_optimizer(optim_config, steps_per_epoch, params, freeze="none"):
    """optax GradientTransformation for the `optim` section of a training config.

    Reads: lr, min_lr, warmup_epochs, epochs, weight_decay, b1, b2, eps. `freeze` is the model's
    official `freeze` argument ('none' | 'mask' | 'encoder'): frozen parameters get zero updates.
    """
    schedule = make_schedule(optim_config.lr, optim_config.min_lr, optim_config.warmup_epochs,
                             optim_config.epochs, steps_per_epoch)
    adamw = optax.adamw(learning_rate=schedule, b1=optim_config.b1, b2=optim_config.b2,
                        eps=optim_config.eps, weight_decay=optim_config.weight_decay,
                        mask=decay_mask)
    labels = trainable_labels(params, freeze)
    if all(label == "train" for label in jax.tree.leaves(labels)):
        return adamw, schedule
    return optax.multi_transform({"train": adamw, "frozen": optax.set_to_zero()}, labels), schedule
