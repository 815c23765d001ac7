"""Full-size inference, official PyTorch DUSt3R vs dust3r_jax, on the same CPU, interleaved.

Both sides build the released architectures with random weights (no download), batch 1 pair,
float32, and time `model(view1, view2)` (median of --repeats timed forwards after one warm-up).
Each measurement runs in its own subprocess: the official code in the torch interpreter given by
--python (with --official-src holding a checkout that has `dust3r/` and `croco/` side by side, as
the official repository does with its croco submodule), ours in this interpreter. The rounds
alternate official / ours so that the machine's drift hits both alike.

With --breakdown, one more process per side times the components separately on the same inputs:
patch embed + encoder (both images, one batch of 2, as the official forward does), the two
decoders, each head (incl. post-processing) and, for the DPT head, its stages (act_postprocess,
layer_rn, the refinenets, the output convs / upsample, post-processing). The official side also
runs the torch profiler over one whole forward (time per conv input shape, upsample_bilinear2d),
and both sides time each convolution shape of one DPT head in isolation (torch F.conv2d vs the
XLA convolution) and the bilinear x2 upsamples.

    python experiments/bench_inference_official.py --official-src /path/to/dust3r_checkout \
        --python /path/to/torch-venv/bin/python [--shims DIR] [--models 512_dpt,224_linear]

No official code is contained here: the official model is built from the constructor string of
the released checkpoints, transformed as the official `load_model` does.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {  # name -> (our config file, (H, W), released checkpoint's args.model)
    "512_dpt": (
        "dust3r_vitl_512_dpt", (384, 512),
        "AsymmetricCroCo3DStereo(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
        "head_type='dpt', output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
        "enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12)",
    ),
    "224_linear": (
        "dust3r_vitl_224_linear", (224, 224),
        "AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(224, 224), head_type='linear', output_mode='pts3d', "
        "depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=1024, enc_depth=24, "
        "enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12)",
    ),
}
THREADS = 2


def loader_string(model_string):
    """What the official load_model instantiates from a checkpoint's args.model."""
    args = model_string.replace("ManyAR_PatchEmbed", "PatchEmbedDust3R")
    if "landscape_only" not in args:
        args = args[:-1] + ", landscape_only=False)"
    else:
        args = args.replace(" ", "").replace("landscape_only=True", "landscape_only=False")
    return args


def dpt_conv_shapes(height, width):
    """(label, Cin, Cout, kernel, stride, pad, h_in, w_in, calls per head) of every conv a DPT head
    runs at image (H, W) (ViT-L/B trunk: hooks of width 1024, 768, 768, 768)."""
    h, w = height // 16, width // 16
    h4, w4 = (h + 1) // 2, (w + 1) // 2
    return [
        ("act0 1x1 1024->96", 1024, 96, 1, 1, 0, h, w, 1),
        ("act1 1x1 768->192", 768, 192, 1, 1, 0, h, w, 1),
        ("act2 1x1 768->384", 768, 384, 1, 1, 0, h, w, 1),
        ("act3 1x1 768->768", 768, 768, 1, 1, 0, h, w, 1),
        ("act3 3x3/2 768->768", 768, 768, 3, 2, 1, h, w, 1),
        ("layer1_rn 3x3 96->256", 96, 256, 3, 1, 1, 4 * h, 4 * w, 1),
        ("layer2_rn 3x3 192->256", 192, 256, 3, 1, 1, 2 * h, 2 * w, 1),
        ("layer3_rn 3x3 384->256", 384, 256, 3, 1, 1, h, w, 1),
        ("layer4_rn 3x3 768->256", 768, 256, 3, 1, 1, h4, w4, 1),
        ("refinenet4 RCU 3x3 256", 256, 256, 3, 1, 1, h4, w4, 2),
        ("refinenet4 out 1x1 256", 256, 256, 1, 1, 0, 2 * h4, 2 * w4, 1),
        ("refinenet3 RCU 3x3 256", 256, 256, 3, 1, 1, h, w, 4),
        ("refinenet3 out 1x1 256", 256, 256, 1, 1, 0, 2 * h, 2 * w, 1),
        ("refinenet2 RCU 3x3 256", 256, 256, 3, 1, 1, 2 * h, 2 * w, 4),
        ("refinenet2 out 1x1 256", 256, 256, 1, 1, 0, 4 * h, 4 * w, 1),
        ("refinenet1 RCU 3x3 256", 256, 256, 3, 1, 1, 4 * h, 4 * w, 4),
        ("refinenet1 out 1x1 256", 256, 256, 1, 1, 0, 8 * h, 8 * w, 1),
        ("head.0 3x3 256->128", 256, 128, 3, 1, 1, 8 * h, 8 * w, 1),
        ("head.2 3x3 128->128", 128, 128, 3, 1, 1, 16 * h, 16 * w, 1),
        ("head.4 1x1 128->4", 128, 4, 1, 1, 0, 16 * h, 16 * w, 1),
    ]


def dpt_upsample_shapes(height, width):
    """(label, C, h_in, w_in, calls per head) of the bilinear x2 (align_corners=True) upsamples."""
    h, w = height // 16, width // 16
    h4, w4 = (h + 1) // 2, (w + 1) // 2
    return [
        ("refinenet4 up", 256, h4, w4, 1), ("refinenet3 up", 256, h, w, 1), ("refinenet2 up", 256, 2 * h, 2 * w, 1),
        ("refinenet1 up", 256, 4 * h, 4 * w, 1), ("head up", 128, 8 * h, 8 * w, 1),
    ]


def _timed(fn, repeats, sync=lambda out: out):
    """One warm-up call, then `repeats` timed calls; returns (median s, all times, last output)."""
    out = sync(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = sync(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


# ------------------------------------------------------------------------------------------------
# official side (runs in the torch interpreter)
# ------------------------------------------------------------------------------------------------
def official_child(model_name, repeats, breakdown, official_src, shims):
    if shims:
        sys.path.insert(0, shims)
    sys.path.insert(0, official_src)
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(THREADS)
    import dust3r.model as official_model
    import models.pos_embed as croco_pos_embed  # croco's, on sys.path via dust3r.utils.path_to_croco

    _, (height, width), model_string = MODELS[model_name]
    torch.manual_seed(0)
    start = time.perf_counter()
    net = eval(loader_string(model_string), vars(official_model)).eval()  # noqa: S307 (a constant string)
    build_s = time.perf_counter() - start
    rng = np.random.default_rng(0)
    views = [
        {"img": torch.from_numpy(rng.uniform(-1, 1, (1, 3, height, width)).astype(np.float32)),
         "true_shape": torch.tensor([[height, width]], dtype=torch.int32), "idx": [i], "instance": [str(i)]}
        for i in range(2)
    ]
    rope_cls = type(net.rope)
    info = {
        "side": "official", "model": model_name, "image": f"{height}x{width}", "build_s": build_s,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "rope_impl": f"{rope_cls.__module__}.{rope_cls.__name__}"
                     + (" (cuRoPE2D)" if getattr(croco_pos_embed, "cuRoPE2D", None) is rope_cls else " (pure-PyTorch fallback)"),
        "n_params": sum(p.numel() for p in net.parameters()),
        "loader_string": loader_string(model_string),
        "load_start": os.getloadavg()[0],
    }
    with torch.no_grad():
        info["s_per_pair"], info["times"], _ = _timed(lambda: net(*views), repeats)
        if breakdown:
            info["breakdown"] = _official_breakdown(net, views, repeats, height, width, torch, F)
            info["profile"] = _official_profile(net, views, torch)
            if model_name.endswith("dpt"):
                info["conv_micro"] = _official_conv_micro(height, width, repeats, torch, F)
    info["load_end"] = os.getloadavg()[0]
    return info


def _official_breakdown(net, views, repeats, height, width, torch, F):
    from einops import rearrange

    v1, v2 = views
    parts = {}

    def time_part(name, fn):
        parts[name], _, out = _timed(fn, repeats)
        return out

    img = torch.cat((v1["img"], v2["img"]))
    shape = torch.cat((v1["true_shape"], v2["true_shape"]))
    time_part("patch_embed (2 images)", lambda: net.patch_embed(img, true_shape=shape))
    (shape1, shape2), (feat1, feat2), (pos1, pos2) = time_part(
        "patch_embed + encoder (2 images)", lambda: net._encode_symmetrized(v1, v2))
    dec1, dec2 = time_part("decoders (both)", lambda: [list(d) for d in net._decoder(feat1, pos1, feat2, pos2)])
    dec1 = [t.float() for t in dec1]
    dec2 = [t.float() for t in dec2]
    time_part("head1 incl. postprocess", lambda: net._downstream_head(1, dec1, shape1))
    time_part("head2 incl. postprocess", lambda: net._downstream_head(2, dec2, shape2))
    time_part("whole forward", lambda: net(v1, v2))
    if net.head_type != "dpt":
        return parts
    # DPT stages of head1 (the two heads have identical shapes), the official forward's sequence
    dpt = net.downstream_head1.dpt
    n_h, n_w = height // 16, width // 16
    hooked = [rearrange(dec1[hook], "b (nh nw) c -> b c nh nw", nh=n_h, nw=n_w) for hook in dpt.hooks]
    levels = time_part("dpt: act_postprocess (4 hooks)", lambda: [dpt.act_postprocess[k](x) for k, x in enumerate(hooked)])
    for k in range(4):
        time_part(f"dpt: act_postprocess[{k}]", lambda k=k: dpt.act_postprocess[k](hooked[k]))
    projected = time_part("dpt: layer_rn (4 convs)", lambda: [dpt.scratch.layer_rn[k](x) for k, x in enumerate(levels)])
    scratch = dpt.scratch

    def fusion():
        p4 = scratch.refinenet4(projected[3])[:, :, :projected[2].shape[2], :projected[2].shape[3]]
        p3 = scratch.refinenet3(p4, projected[2])
        p2 = scratch.refinenet2(p3, projected[1])
        return [p4, p3, p2, scratch.refinenet1(p2, projected[0])]

    paths = time_part("dpt: refinenets 4..1", fusion)
    time_part("dpt: refinenet4", lambda: scratch.refinenet4(projected[3]))
    time_part("dpt: refinenet3", lambda: scratch.refinenet3(paths[0], projected[2]))
    time_part("dpt: refinenet2", lambda: scratch.refinenet2(paths[1], projected[1]))
    time_part("dpt: refinenet1", lambda: scratch.refinenet1(paths[2], projected[0]))
    out = time_part("dpt: output head (conv, up, conv, relu, conv)", lambda: dpt.head(paths[3]))
    head = dpt.head
    y0 = time_part("dpt: head.0 conv3x3 256->128", lambda: head[0](paths[3]))
    y1 = time_part("dpt: head.1 bilinear x2", lambda: head[1](y0))
    y2 = time_part("dpt: head.2 conv3x3 128->128", lambda: head[2](y1))
    time_part("dpt: head.3-4 relu + conv1x1 128->4", lambda: head[4](head[3](y2.clone())))
    time_part("dpt: postprocess", lambda: net.downstream_head1.postprocess(out, net.depth_mode, net.conf_mode))
    return parts


def _official_profile(net, views, torch):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        net(*views)
    by_shape = []
    for e in prof.key_averages(group_by_input_shape=True):
        if any(s in e.key for s in ("convolution", "upsample", "conv_transpose", "mkldnn", "linear", "addmm", "matmul", "bmm", "softmax", "gelu", "layer_norm")):
            by_shape.append({"op": e.key, "shapes": str(e.input_shapes)[:160], "count": e.count,
                             "total_ms": e.cpu_time_total / 1e3, "self_ms": e.self_cpu_time_total / 1e3})
    by_op = [{"op": e.key, "count": e.count, "total_ms": e.cpu_time_total / 1e3, "self_ms": e.self_cpu_time_total / 1e3}
             for e in prof.key_averages()]
    by_op.sort(key=lambda r: -r["self_ms"])
    by_shape.sort(key=lambda r: -r["total_ms"])
    return {"by_shape": by_shape[:60], "by_op": by_op[:30]}


def _official_conv_micro(height, width, repeats, torch, F):
    rows = []
    gen = torch.Generator().manual_seed(0)
    for label, cin, cout, k, stride, pad, h, w, calls in dpt_conv_shapes(height, width):
        x = torch.randn(1, cin, h, w, generator=gen)
        weight = torch.randn(cout, cin, k, k, generator=gen) * 0.01
        bias = torch.zeros(cout)
        t, _, _ = _timed(lambda: F.conv2d(x, weight, bias, stride, pad), repeats)
        rows.append({"label": label, "calls": calls, "s": t})
    for label, c, h, w, calls in dpt_upsample_shapes(height, width):
        x = torch.randn(1, c, h, w, generator=gen)
        t, _, _ = _timed(lambda: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True), repeats)
        rows.append({"label": label + " bilinear x2", "calls": calls, "s": t})
    for label, cin, k, h, w in (("act0 convT 4x4/4 96", 96, 4, height // 16, width // 16),
                                ("act1 convT 2x2/2 192", 192, 2, height // 16, width // 16)):
        x = torch.randn(1, cin, h, w, generator=gen)
        weight = torch.randn(cin, cin, k, k, generator=gen) * 0.01
        t, _, _ = _timed(lambda: F.conv_transpose2d(x, weight, torch.zeros(cin), stride=k), repeats)
        rows.append({"label": label, "calls": 1, "s": t})
    return rows


# ------------------------------------------------------------------------------------------------
# our side (runs in this interpreter)
# ------------------------------------------------------------------------------------------------
def ours_child(model_name, repeats, breakdown):
    import jax

    from bench_inference import jit_forward, random_model

    start = time.perf_counter()
    model, params, views, (height, width) = random_model(model_name, "float32", 1)
    build_s = time.perf_counter() - start
    info = {
        "side": "ours", "model": model_name, "image": f"{height}x{width}", "build_s": build_s,
        "jax": jax.__version__, "device": str(jax.devices()[0].platform),
        "n_params": int(sum(x.size for x in jax.tree_util.tree_leaves(params))),
        "load_start": os.getloadavg()[0],
    }
    start = time.perf_counter()
    compiled = jit_forward(model, (height, width))[0].lower({"params": params}, *views).compile()
    info["compile_s"] = time.perf_counter() - start
    info["s_per_pair"], info["times"], _ = _timed(lambda: compiled({"params": params}, *views), repeats, jax.block_until_ready)
    if breakdown:
        info["breakdown"] = _ours_breakdown(model, params, views, repeats, height, width)
        if model_name.endswith("dpt"):
            info["conv_micro"] = _ours_conv_micro(height, width, repeats)
    info["load_end"] = os.getloadavg()[0]
    return info


def _ours_breakdown(model, params, views, repeats, height, width):
    import jax
    import jax.numpy as jnp

    from dust3r_jax.layers import dpt_head as dpt_layers
    from dust3r_jax.layers.postprocess import postprocess
    from dust3r_jax.model_config import dpt_hooks

    cfg = model.config
    variables = {"params": params}
    parts = {}

    def time_part(name, fn, *args):
        compiled = jax.jit(fn).lower(*args).compile()
        parts[name], _, out = _timed(lambda: compiled(*args), repeats, jax.block_until_ready)
        return out

    img = jnp.concatenate([views[0]["img"], views[1]["img"]])
    shape = jnp.concatenate([views[0]["true_shape"], views[1]["true_shape"]])

    def patch_embed(v, img, shape):
        return model.apply(v, img, shape, method=lambda m, i, s: m.patch_embed(i, s))

    time_part("patch_embed (2 images)", patch_embed, variables, img, shape)

    def encode(v, img, shape):
        return model.apply(v, {"img": img, "true_shape": shape}, method="encode_views")

    tokens, positions = time_part("patch_embed + encoder (2 images)", encode, variables, img, shape)
    feat1, feat2, pos1, pos2 = tokens[:1], tokens[1:], positions[:1], positions[1:]

    def decode(m, *args):
        with m._precision():
            return m.decode(*args)

    dec1, dec2 = time_part("decoders (both)", lambda v, *a: model.apply(v, *a, method=decode), variables, feat1, pos1, feat2, pos2)

    def head(name):
        def run(m, tokens, shape):
            with m._precision():
                raw = m.run_head(name, tokens, shape, (height, width))
            return postprocess(raw, cfg.depth_mode, cfg.conf_mode)
        return lambda v, tokens, shape: model.apply(v, tokens, shape, method=run)

    time_part("head1 incl. postprocess", head("downstream_head1"), variables, dec1, views[0]["true_shape"])
    time_part("head2 incl. postprocess", head("downstream_head2"), variables, dec2, views[1]["true_shape"])
    time_part("whole forward", model.apply, variables, *views)
    if cfg.head_type != "dpt":
        return parts
    # DPT stages of head1, each its own jitted sub-module applied to its parameter sub-tree
    p_dpt = params["downstream_head1"]["dpt"]
    kw = dict(dtype=jnp.float32, param_dtype=jnp.float32)
    rows, cols = height // 16, width // 16
    hooks = dpt_hooks(cfg)
    grids = [dec1[h].reshape(1, rows, cols, dec1[h].shape[-1]) for h in hooks]
    acts = [dpt_layers.ActPostprocess(k, **kw) for k in range(4)]

    def act_all(p, grids):
        return [acts[k].apply({"params": p[f"act_postprocess_{k}"]}, grids[k]) for k in range(4)]

    levels = time_part("dpt: act_postprocess (4 hooks)", act_all, p_dpt, grids)
    for k in range(4):
        time_part(f"dpt: act_postprocess[{k}]", lambda p, g, k=k: acts[k].apply({"params": p[f"act_postprocess_{k}"]}, g), p_dpt, grids[k])
    rn = [dpt_layers.conv(256, 3, levels[k].shape[-1], None, padding=1, use_bias=False, **kw) for k in range(4)]

    def layer_rn(p, levels):
        return [rn[k].apply({"params": p["scratch"][f"layer{k + 1}_rn"]}, levels[k]) for k in range(4)]

    projected = time_part("dpt: layer_rn (4 convs)", layer_rn, p_dpt, levels)
    fusion = dpt_layers.FeatureFusion(**kw)

    def refine(p, k, x, skip=None):
        return fusion.apply({"params": p["scratch"][f"refinenet{k}"]}, x, skip)

    def fusion_all(p, projected):
        p4 = refine(p, 4, projected[3])[:, : projected[2].shape[1], : projected[2].shape[2]]
        p3 = refine(p, 3, p4, projected[2])
        p2 = refine(p, 2, p3, projected[1])
        return [p4, p3, p2, refine(p, 1, p2, projected[0])]

    paths = time_part("dpt: refinenets 4..1", fusion_all, p_dpt, projected)
    time_part("dpt: refinenet4", lambda p, x: refine(p, 4, x), p_dpt, projected[3])
    time_part("dpt: refinenet3", lambda p, x, s: refine(p, 3, x, s), p_dpt, paths[0], projected[2])
    time_part("dpt: refinenet2", lambda p, x, s: refine(p, 2, x, s), p_dpt, paths[1], projected[1])
    time_part("dpt: refinenet1", lambda p, x, s: refine(p, 1, x, s), p_dpt, paths[2], projected[0])
    out_head = dpt_layers.OutputHead(4, **kw)
    raw = time_part("dpt: output head (conv, up, conv, relu, conv)",
                    lambda p, x: out_head.apply({"params": p["head"]}, x), p_dpt, paths[3])
    c0 = dpt_layers.conv(128, 3, 256, None, padding=1, **kw)
    c2 = dpt_layers.conv(128, 3, 128, None, padding=1, **kw)
    c4 = dpt_layers.conv(4, 1, 128, None, **kw)
    y0 = time_part("dpt: head.0 conv3x3 256->128", lambda p, x: c0.apply({"params": p["head"]["layers_0"]}, x), p_dpt, paths[3])
    y1 = time_part("dpt: head.1 bilinear x2", dpt_layers.upsample2x_bilinear, y0)
    y2 = time_part("dpt: head.2 conv3x3 128->128", lambda p, x: c2.apply({"params": p["head"]["layers_2"]}, x), p_dpt, y1)
    time_part("dpt: head.3-4 relu + conv1x1 128->4",
              lambda p, x: c4.apply({"params": p["head"]["layers_4"]}, jax.nn.relu(x)), p_dpt, y2)
    time_part("dpt: postprocess", lambda r: postprocess(r, cfg.depth_mode, cfg.conf_mode), raw)
    return parts


def _ours_conv_micro(height, width, repeats):
    import jax
    import jax.numpy as jnp

    from dust3r_jax.layers.dpt_head import upsample2x_bilinear

    rows = []
    key = jax.random.key(0)
    for label, cin, cout, k, stride, pad, h, w, calls in dpt_conv_shapes(height, width):
        key, k1, k2 = jax.random.split(key, 3)
        x = jax.random.normal(k1, (1, h, w, cin), jnp.float32)
        weight = jax.random.normal(k2, (k, k, cin, cout), jnp.float32) * 0.01
        bias = jnp.zeros((cout,), jnp.float32)

        def conv(x, weight, bias, stride=stride, pad=pad):
            y = jax.lax.conv_general_dilated(x, weight, (stride, stride), ((pad, pad), (pad, pad)),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                             precision=jax.lax.Precision.HIGHEST)
            return y + bias

        compiled = jax.jit(conv).lower(x, weight, bias).compile()
        t, _, _ = _timed(lambda: compiled(x, weight, bias), repeats, jax.block_until_ready)
        rows.append({"label": label, "calls": calls, "s": t})
    for label, c, h, w, calls in dpt_upsample_shapes(height, width):
        key, k1 = jax.random.split(key)
        x = jax.random.normal(k1, (1, h, w, c), jnp.float32)
        compiled = jax.jit(upsample2x_bilinear).lower(x).compile()
        t, _, _ = _timed(lambda: compiled(x), repeats, jax.block_until_ready)
        rows.append({"label": label + " bilinear x2", "calls": calls, "s": t})
    for label, cin, k, h, w in (("act0 convT 4x4/4 96", 96, 4, height // 16, width // 16),
                                ("act1 convT 2x2/2 192", 192, 2, height // 16, width // 16)):
        key, k1, k2 = jax.random.split(key, 3)
        x = jax.random.normal(k1, (1, h, w, cin), jnp.float32)
        kernel = jax.random.normal(k2, (k, k, cin, cin), jnp.float32) * 0.01

        def convt(x, kernel, k=k):  # as dust3r_jax.layers.dpt_head.PatchConvTranspose computes it
            y = jnp.einsum("bhwc,ijco->bhiwjo", x, kernel, precision=jax.lax.Precision.HIGHEST)
            return y.reshape(x.shape[0], x.shape[1] * k, x.shape[2] * k, kernel.shape[-1])

        compiled = jax.jit(convt).lower(x, kernel).compile()
        t, _, _ = _timed(lambda: compiled(x, kernel), repeats, jax.block_until_ready)
        rows.append({"label": label, "calls": 1, "s": t})
    return rows


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------
def busy_cores(seconds=3.0):
    """CPU cores kept busy by everything on the machine over the next `seconds` (from /proc/stat).

    Unlike the load average it does not remember the previous (our own) benchmark process."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values), values[3] + values[4]  # total, idle + iowait

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(total1 - total0, 1))


def wait_for_quiet(max_busy, max_wait_s):
    """Waits until less than `max_busy` cores are busy (at most max_wait_s).
    Returns (busy cores, 1-minute load average, seconds waited)."""
    waited = 0
    busy = busy_cores()
    while busy > max_busy and waited < max_wait_s:
        time.sleep(10)
        waited += 13
        busy = busy_cores()
    return busy, os.getloadavg()[0], waited


def run_child(cmd, env):
    child = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if child.returncode:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-src", required=True, help="folder holding the official dust3r/ and croco/")
    parser.add_argument("--shims", default="", help="folder put first on the official sys.path (e.g. a torchvision stand-in)")
    parser.add_argument("--python", required=True, help="interpreter with torch for the official side")
    parser.add_argument("--models", default="512_dpt,224_linear")
    parser.add_argument("--rounds", type=int, default=3, help="alternating official/ours process pairs per model")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per process (after a warm-up)")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--max-busy", type=float, default=0.3,
                        help="start a process only when fewer cores than this are busy (3 s sample of /proc/stat)")
    parser.add_argument("--max-wait", type=int, default=300, help="seconds to wait for the load to drop")
    parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "bench_inference_vs_official_cpu.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, model_name, mode = args.child.split(":")
        if side == "official":
            info = official_child(model_name, args.repeats, mode == "breakdown", args.official_src, args.shims)
        else:
            info = ours_child(model_name, args.repeats, mode == "breakdown")
        print(json.dumps(info))
        return

    env = dict(os.environ, PYTHONHASHSEED="0")
    common = ["--official-src", args.official_src, "--shims", args.shims, "--python", args.python, "--repeats", str(args.repeats)]
    commands = {
        "official": lambda m, mode: [args.python, __file__, "--child", f"official:{m}:{mode}", *common],
        "ours": lambda m, mode: [sys.executable, __file__, "--child", f"ours:{m}:{mode}", *common],
    }
    results = {m: {"official": [], "ours": []} for m in args.models.split(",")}
    breakdowns = {m: {} for m in results}
    for model_name in results:
        for rnd in range(args.rounds):
            order = ("official", "ours") if rnd % 2 == 0 else ("ours", "official")
            for side in order:
                busy, load, waited = wait_for_quiet(args.max_busy, args.max_wait)
                info = run_child(commands[side](model_name, "time"), env)
                info.update(busy_before=busy, load_before=load, waited_s=waited)
                results[model_name][side].append(info)
                print(f"{model_name} round {rnd} {side}: {info['s_per_pair']:.2f} s/pair "
                      f"(times {', '.join(f'{t:.2f}' for t in info['times'])}; busy cores before {busy:.2f}, load {load:.2f})", flush=True)
        if not args.no_breakdown:
            for side in ("official", "ours"):
                busy, load, waited = wait_for_quiet(args.max_busy, args.max_wait)
                info = run_child(commands[side](model_name, "breakdown"), env)
                info.update(busy_before=busy, load_before=load, waited_s=waited)
                breakdowns[model_name][side] = info
                print(f"{model_name} breakdown {side} done (busy cores before {busy:.2f})", flush=True)
        write_report(args, results, breakdowns)
    print(f"written to {args.out}")


def write_report(args, results, breakdowns):
    lines = [
        "# Full-size inference on CPU: official PyTorch DUSt3R vs dust3r_jax",
        "",
        f"Date {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"{THREADS} torch threads, float32, batch 1 pair, random weights, median of {args.repeats} timed forwards "
        "after one warm-up per process; processes alternate official / ours.",
        "",
        "Command:",
        "",
        "```",
        "python experiments/bench_inference_official.py " + " ".join(a for a in sys.argv[1:]),
        "```",
        "",
    ]
    off = next((r for m in results.values() for r in m["official"]), None)
    ours = next((r for m in results.values() for r in m["ours"]), None)
    if off:
        lines.append(f"Official: torch {off['torch']}, oneDNN available: {off['mkldnn_available']}, RoPE: {off['rope_impl']}.")
    if ours:
        lines.append(f"Ours: jax {ours['jax']} ({ours['device']}).")
    lines += ["", "## Seconds per pair (whole forward)", "",
              "| model | image | official s/pair (median of process medians) | ours s/pair | ours / official | official per process | ours per process | busy cores before each (off / ours) |",
              "|---|---|---|---|---|---|---|---|"]
    for model_name, sides in results.items():
        if not sides["official"] or not sides["ours"]:
            continue
        o = statistics.median(r["s_per_pair"] for r in sides["official"])
        u = statistics.median(r["s_per_pair"] for r in sides["ours"])
        def fmt(side, key):
            return ", ".join(format(r[key], ".2f") for r in sides[side])

        lines.append(
            f"| {model_name} | {sides['official'][0]['image']} | {o:.2f} | {u:.2f} | {u / o:.2f} | "
            f"{fmt('official', 's_per_pair')} | {fmt('ours', 's_per_pair')} | "
            f"{fmt('official', 'busy_before')} / {fmt('ours', 'busy_before')} |")
    lines += ["", "Build / compile: " + "; ".join(
        f"{m}: official build {statistics.median(r['build_s'] for r in s['official']):.1f} s, "
        f"ours init {statistics.median(r['build_s'] for r in s['ours']):.1f} s + jit compile "
        f"{statistics.median(r['compile_s'] for r in s['ours']):.1f} s"
        for m, s in results.items() if s["official"] and s["ours"]) + "."]
    for model_name, sides in breakdowns.items():
        if "official" not in sides or "ours" not in sides:
            continue
        bo, bu = sides["official"]["breakdown"], sides["ours"]["breakdown"]
        lines += ["", f"## Components, {model_name} ({sides['official']['image']})", "",
                  "Each component timed alone (median of the repeats after a warm-up; ours: each part jit-compiled "
                  "on its own, so XLA cannot fuse across the cut). `dpt:` rows are head1's stages.", "",
                  "| component | official s | ours s | ours - official s | ours / official |", "|---|---|---|---|---|"]
        for name in bo:
            if name in bu:
                lines.append(f"| {name} | {bo[name]:.3f} | {bu[name]:.3f} | {bu[name] - bo[name]:+.3f} | {bu[name] / bo[name]:.2f} |")
        if "conv_micro" in sides["official"] and "conv_micro" in sides["ours"]:
            lines += ["", f"### One DPT head's convolutions / upsamples in isolation ({model_name})", "",
                      "torch `F.conv2d` / `F.interpolate(bilinear, align_corners=True)` / `F.conv_transpose2d` (NCHW) vs "
                      "XLA `conv_general_dilated` (NHWC, HWIO) / our `upsample2x_bilinear` / our einsum ConvTranspose; "
                      "random data; ms per call; total = ms x calls per head.", "",
                      "| op | calls/head | official ms | ours ms | official total ms | ours total ms | ours / official |",
                      "|---|---|---|---|---|---|---|"]
            tot_o = tot_u = 0.0
            for ro, ru in zip(sides["official"]["conv_micro"], sides["ours"]["conv_micro"]):
                tot_o += ro["s"] * ro["calls"]
                tot_u += ru["s"] * ru["calls"]
                lines.append(f"| {ro['label']} | {ro['calls']} | {ro['s'] * 1e3:.1f} | {ru['s'] * 1e3:.1f} | "
                             f"{ro['s'] * ro['calls'] * 1e3:.1f} | {ru['s'] * ru['calls'] * 1e3:.1f} | {ru['s'] / ro['s']:.2f} |")
            lines.append(f"| **sum** | | | | {tot_o * 1e3:.0f} | {tot_u * 1e3:.0f} | {tot_u / tot_o:.2f} |")
        prof = sides["official"].get("profile")
        if prof:
            lines += ["", f"### Official torch.profiler, one whole forward ({model_name}): ops by input shape", "",
                      "(profiler overhead included; total = incl. children, self = excl.)", "",
                      "| op | input shapes | calls | total ms | self ms |", "|---|---|---|---|---|"]
            for r in prof["by_shape"][:40]:
                lines.append(f"| {r['op']} | `{r['shapes']}` | {r['count']} | {r['total_ms']:.1f} | {r['self_ms']:.1f} |")
            lines += ["", "Top ops by self time:", "", "| op | calls | self ms | total ms |", "|---|---|---|---|"]
            for r in prof["by_op"][:20]:
                lines.append(f"| {r['op']} | {r['count']} | {r['self_ms']:.1f} | {r['total_ms']:.1f} |")
    lines += ["", "## Raw", "", "```json", json.dumps({"results": results, "breakdowns": breakdowns}, default=str)[:200000], "```", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))


if __name__ == "__main__":
    main()
