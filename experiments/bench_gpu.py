"""Everything issue 16 measures on an accelerator, in one run for one device slot.

Sections (`--sections`, in this order; each row is written to the table as soon as it is measured,
so a run cut short keeps what it did):
* matmul: the bf16 matmul ceiling (TFLOP/s of an 8192^3 product): the peak MFU is relative to;
* inference: the full-size 512x384 DPT and 224 linear models (random weights of the official
  configs, `bench_inference.random_model`) in float32 and bfloat16 at batch 1/8/32: ms per pair,
  pairs/s, MFU = analytic FLOPs (`dust3r_jax.flops.pair_flops`, encoder included) / time / the
  measured bf16 ceiling; plus the bf16 pointmap's max |error| / max |fp32| (same weights);
  each row names the attention kernel it ran (model config `attention`; `--attention xla,cudnn`
  runs the bf16 rows once per kernel to compare them; float32 rows skip 'cudnn', which takes
  half precision only);
* pipeline: 16 photos at 512x384 through load, inference (linear head, bf16), alignment (300
  iterations, device MST init) and export (`bench_pipeline.run_one`);
* alignment: 300 iterations for 16 and 64 synthetic images at 512x384, complete graph, device MST
  init (`bench_alignment.run_one`); synthetic data for 64 images takes minutes on the host.

    python experiments/bench_gpu.py                       # all of it (GPU)
    python experiments/bench_gpu.py --sections matmul,inference --batches 1,8
    python experiments/bench_gpu.py --sections matmul,inference --attention xla,cudnn
    python experiments/bench_gpu.py --smoke               # tiny sizes, CPU, well under a minute

Writes experiments/results/bench_gpu_<device>.md (`--out` to change).
"""
import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

import bench_alignment  # noqa: E402  (this folder)
import bench_inference  # noqa: E402
import bench_pipeline  # noqa: E402

SECTIONS = ("matmul", "inference", "pipeline", "alignment")
SMOKE_HW = (32, 48)


def _time(fn, repeats):
    """Median seconds of `repeats` calls of fn (after one warm-up call)."""
    import jax
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_ceiling(n, repeats):
    """bf16 TFLOP/s of an (n, n) @ (n, n) product (float32 accumulation)."""
    import jax
    import jax.numpy as jnp
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    f = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    return 2 * n ** 3 / _time(lambda: f(a, b), repeats) / 1e12


def _model(model_name, dtype, batch, smoke):
    """(model, params, views, (H, W)): the released architecture, or a tiny one with --smoke."""
    if not smoke:
        return bench_inference.random_model(model_name, dtype, batch)
    import jax
    import jax.numpy as jnp
    import numpy as np
    from dust3r_jax.loading import init_params
    from dust3r_jax.model import AsymmetricCroCo3DStereo, model_config
    head = "dpt" if model_name.endswith("dpt") else "linear"
    tiny = dict(bench_pipeline.TINY, dec_depth=10) if head == "dpt" else bench_pipeline.TINY
    model = AsymmetricCroCo3DStereo(model_config(**tiny, head_type=head, dtype=dtype))
    params = jax.jit(lambda key: init_params(model, key))(jax.random.key(0))
    rng = np.random.default_rng(0)
    views = tuple({"img": jnp.asarray(rng.uniform(-1, 1, (batch, *SMOKE_HW, 3)), jnp.float32),
                   "true_shape": jnp.tile(jnp.array([SMOKE_HW], jnp.int32), (batch, 1))} for _ in range(2))
    return model, params, views, SMOKE_HW


def attention_used(config, device):
    """The attention kernel a model of `config` runs on `device` ('auto' resolved as the model does)."""
    from dust3r_jax.layers.attention import attention_implementation
    if config.attention != "auto":
        return config.attention
    platform = device.platform
    if platform == "gpu" and "cuda" in getattr(device.client, "platform_version", "").lower():
        platform = "cuda"
    head_dims = {config.enc_embed_dim // config.enc_num_heads, config.dec_embed_dim // config.dec_num_heads}
    return "/".join(sorted({attention_implementation(config.dtype, hd, platform) for hd in head_dims}))


def inference_rows(models, dtypes, batches, repeats, peak_tflops, smoke, attentions=("auto",)):
    """Yields one row per (model, dtype, attention kernel, batch)."""
    import jax
    import numpy as np
    from dust3r_jax.flops import pair_flops
    from dust3r_jax.model import AsymmetricCroCo3DStereo, model_config
    reference = {}
    for model_name in models:
        for dtype in dtypes:
            model, params, views, hw = _model(model_name, dtype, max(batches), smoke)
            flops = pair_flops(model.config, hw).total
            for attention in attentions:
                if dtype == "float32" and attention == "cudnn":
                    continue  # the cuDNN kernel takes bf16/fp16 only
                variant = AsymmetricCroCo3DStereo(model_config(**{**model.config.to_dict(), "attention": attention}))
                yield from _variant_rows(model_name, variant, params, views, hw, flops, batches, repeats,
                                         peak_tflops, reference)
            del model, params, views


def _variant_rows(model_name, model, params, views, hw, flops, batches, repeats, peak_tflops, reference):
    """Rows of one model variant at every batch size; float32 rows fill `reference` for the bf16 ones."""
    import jax
    import numpy as np
    dtype = model.config.dtype
    apply, _ = bench_inference.jit_forward(model, hw)
    attention = attention_used(model.config, jax.devices()[0])
    for batch in batches:
        batch_views = jax.tree.map(lambda x: x[:batch], views)
        out = apply({"params": params}, *batch_views)
        pts = np.asarray(out[0]["pts3d"], np.float32)
        seconds = _time(lambda: apply({"params": params}, *batch_views), repeats) / batch
        if dtype == "float32":
            reference[model_name, batch] = pts
        ref = reference.get((model_name, batch))
        # max |bf16 - fp32| / max |fp32|, the criterion of tests/test_bf16.py
        rel = (float(np.abs(pts - ref).max() / np.abs(ref).max()) if ref is not None and dtype != "float32"
               else None)
        yield {"model": model_name, "image": f"{hw[1]}x{hw[0]}", "dtype": dtype, "attention": attention,
               "batch": batch, "ms_per_pair": 1e3 * seconds, "pairs_per_s": 1 / seconds, "gflop_per_pair": flops / 1e9,
               "mfu": flops / seconds / (peak_tflops * 1e12) if peak_tflops else None,
               "rel_err_vs_fp32": rel}


def pipeline_row(n_images, size, niter, smoke):
    """Seconds of each stage of one reconstruction (bench_pipeline.run_one)."""
    args = types.SimpleNamespace(quick=smoke, head="linear", dtype="bfloat16", niter=niter,
                                 batch_size=2 if smoke else 8, init_backend="device")
    model, params = bench_pipeline.build_model(args, size)
    row = {"images": n_images, "size": size}
    with tempfile.TemporaryDirectory() as tmp:
        photos = bench_pipeline.write_photos(Path(tmp), n_images)
        out = Path(tmp) / "out"
        out.mkdir()
        bench_pipeline.run_one(args, model, params, photos, size, out, row)
    return row


def _device_name():
    import jax
    device = jax.devices()[0]
    return f"{device.platform}: {getattr(device, 'device_kind', '')}".strip()


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def write_table(path, device, results):
    lines = [f"# bench_gpu on {device} ({time.strftime('%Y-%m-%d %H:%M')})", "",
             f"command: `python experiments/bench_gpu.py {' '.join(sys.argv[1:])}`", ""]
    if "matmul" in results:
        lines += [f"bf16 matmul ceiling: {results['matmul']:.1f} TFLOP/s (MFU below is relative to it)", ""]
    if results.get("inference"):
        lines += ["| model | image | dtype | attention | batch | ms/pair | pairs/s | GFLOP/pair | MFU | "
                  "pointmap max abs. err. / max abs. fp32 |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['image']} | {r['dtype']} | {r['attention']} | {r['batch']} | "
                  f"{r['ms_per_pair']:.2f} | "
                  f"{r['pairs_per_s']:.1f} | {r['gflop_per_pair']:.1f} | {_fmt(r['mfu'], '.1%')} | "
                  f"{_fmt(r['rel_err_vs_fp32'], '.1e')} |" for r in results["inference"]]
        lines.append("")
    if results.get("pipeline"):
        lines += ["| pipeline images | size | pairs | load s | inference s (incl. compile) | alignment s | export s |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['images']} | {r['size']} | {r.get('pairs', '-')} | {_fmt(r.get('load'), '.2f')} | "
                  f"{_fmt(r.get('inference'), '.2f')} | {_fmt(r.get('alignment'), '.2f')} | "
                  f"{_fmt(r.get('export'), '.2f')} |" for r in results["pipeline"]]
        lines.append("")
    if results.get("alignment"):
        lines += ["| alignment images | size | pairs | init | init s | compile s | iters | iters s | "
                  "init + iters s | device peak GiB | final loss |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['n']} | {r['size']} | {r['pairs']} | {r['init_backend']} | {r['init_s']:.2f} | "
                  f"{r['compile_s']:.2f} | {r['niter']} | {r['iters_s']:.2f} | {r['init_s'] + r['iters_s']:.2f} | "
                  f"{_fmt(r.get('device_peak_gib'), '.2f')} | {r['final_loss']:.4g} |" for r in results["alignment"]]
        lines.append("")
    for section, error in results.get("errors", {}).items():
        lines.append(f"{section}: FAILED: {error}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU), to check the script")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--models", default="512_dpt,224_linear")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--attention", default="auto",
                        help="attention kernels of the inference rows, e.g. 'xla,cudnn' (model config `attention`)")
    parser.add_argument("--align-n", default="16,64", help="numbers of images of the alignment section")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    smoke = args.smoke
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; known: {SECTIONS}")
    batches = [1] if smoke else [int(b) for b in args.batches.split(",")]
    align_n = [3] if smoke else [int(n) for n in args.align_n.split(",")]
    niter = 10 if smoke else 300
    device = _device_name()
    out = args.out or REPO / "experiments" / "results" / (
        "bench_gpu_smoke.md" if smoke else f"bench_gpu_{re.sub(r'[^A-Za-z0-9]+', '_', device).strip('_')}.md")
    results = {"errors": {}}

    def run(section, fn):
        if section not in sections:
            return
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - one failed section must not lose the others
            results["errors"][section] = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            print(f"{section}: FAILED: {err!r}", file=sys.stderr, flush=True)
        write_table(out, device, results)

    def matmul():
        results["matmul"] = matmul_ceiling(256 if smoke else 8192, args.repeats)
        print(f"bf16 matmul: {results['matmul']:.1f} TFLOP/s", flush=True)

    def inference():
        results["inference"] = []
        for row in inference_rows(args.models.split(","), args.dtypes.split(","), batches, args.repeats,
                                  results.get("matmul"), smoke, args.attention.split(",")):
            results["inference"].append(row)
            write_table(out, device, results)
            print(row, flush=True)

    def pipeline():
        results["pipeline"] = [pipeline_row(3 if smoke else 16, 224 if smoke else 512, 2 if smoke else niter, smoke)]
        print(results["pipeline"][-1], flush=True)

    def alignment():
        results["alignment"] = []
        for n in align_n:
            size = f"{SMOKE_HW[1]}x{SMOKE_HW[0]}" if smoke else "512x384"
            row = bench_alignment.run_one(n, size, "complete", niter, edge_chunk=0 if smoke else 512,
                                          chunk_iters=min(50, niter), init_backend="device")
            results["alignment"].append(row)
            write_table(out, device, results)
            print(row, flush=True)

    for section, fn in (("matmul", matmul), ("inference", inference), ("pipeline", pipeline), ("alignment", alignment)):
        run(section, fn)
    print(f"written to {out}")
    print(Path(out).read_text())
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
