"""From the head's raw 4-channel map to pointmap and confidence (dust3r.heads.postprocess).

raw: (B, H, W, 4) channels x, y, z, confidence-logit. With v = raw[..., :3] and d = ||v||:
  'exp'    pts3d = v / max(d, 1e-8) * expm1(d)     (the released models)
  'square' pts3d = v / max(d, 1e-8) * d^2
  'linear' pts3d = v
conf 'exp': vmin + min(exp(c), vmax - vmin); 'sigmoid': (vmax - vmin) * sigmoid(c) + vmin.
Always computed in float32, as the official code does under autocast.
"""
import jax
import jax.numpy as jnp


def dense_depth(xyz, depth_mode):
    mode = depth_mode[0]
    xyz = xyz.astype(jnp.float32)
    if mode == "linear":
        return xyz
    norm = jnp.linalg.norm(xyz, axis=-1, keepdims=True)
    direction = xyz / jnp.maximum(norm, 1e-8)
    if mode == "square":
        return direction * jnp.square(norm)
    return direction * jnp.expm1(norm)


def dense_conf(logit, conf_mode):
    mode, vmin, vmax = conf_mode
    logit = logit.astype(jnp.float32)
    if mode == "exp":
        return vmin + jnp.minimum(jnp.exp(logit), vmax - vmin)
    return (vmax - vmin) * jax.nn.sigmoid(logit) + vmin


def postprocess(raw, depth_mode, conf_mode):
    """raw: (B, H, W, 3 or 4) -> {'pts3d': (B, H, W, 3)[, 'conf': (B, H, W)]}."""
    out = {"pts3d": dense_depth(raw[..., :3], depth_mode)}
    if conf_mode is not None:
        out["conf"] = dense_conf(raw[..., 3], conf_mode)
    return out
