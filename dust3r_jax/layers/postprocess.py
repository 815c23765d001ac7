"""From the head's raw 4-channel map to pointmap and confidence (dust3r.heads.postprocess).

raw: (B, H, W, 4) channels x, y, z, confidence-logit. With v = raw[..., :3] and d = ||v||:
  'exp'    pts3d = v / max(d, 1e-8) * expm1(d)     (the released models)
  'square' pts3d = v / max(d, 1e-8) * d^2
  'linear' pts3d = v
conf 'exp': vmin + min(exp(c), vmax - vmin); 'sigmoid': (vmax - vmin) * sigmoid(c) + vmin.
MASt3R's descriptors and descriptor confidence: see `postprocess`.
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


def postprocess(raw, depth_mode, conf_mode, desc_dim=None, two_confs=False, desc_conf_mode=None):
    """raw: (B, H, W, 3 or 4) -> {'pts3d': (B, H, W, 3)[, 'conf': (B, H, W)]}.

    MASt3R (mast3r/catmlp_dpt_head.py postprocess), desc_dim given: raw has desc_dim more channels
    after xyz+conf, and one more if two_confs. Adds 'desc' (B, H, W, desc_dim), divided by its L2 norm
    (no epsilon, as official), and 'desc_conf' (B, H, W): that last channel through desc_conf_mode
    (None: conf_mode) if two_confs, else a copy of conf.
    """
    out = {"pts3d": dense_depth(raw[..., :3], depth_mode)}
    if conf_mode is not None:
        out["conf"] = dense_conf(raw[..., 3], conf_mode)
    if desc_dim is not None:
        start = 3 + (conf_mode is not None)
        desc = raw[..., start:start + desc_dim].astype(jnp.float32)
        out["desc"] = desc / jnp.linalg.norm(desc, axis=-1, keepdims=True)
        if two_confs:
            out["desc_conf"] = dense_conf(raw[..., start + desc_dim], desc_conf_mode or conf_mode)
        else:
            out["desc_conf"] = out["conf"]
    return out
