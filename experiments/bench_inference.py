"""Inference speed of the full-size released architectures with random weights (no download).

For each model x resolution x compute dtype x batch: jit-compile time, seconds per pair (median
of --repeats timed runs after one warm-up), pairs/s, peak host memory of the process and, on
GPU, the device's peak bytes in use. Each
configuration runs in its own subprocess, so compile time and peak memory are its own. The
forward is `jax.jit(model.apply)` with the compiler options `dust3r_jax.inference` uses for the
image size (on CPU from 512 tokens per image: YNNPACK fusions off; `--plain-jit` leaves them out).

    python experiments/bench_inference.py                      # the default table (CPU: slow!)
    python experiments/bench_inference.py --models 224_linear --dtypes float32 --batches 1

Reference (official PyTorch, 2-core CPU of this project, fp32, batch 1, from
../shared/reference/timings_fullsize_cpu.json): 224 linear 2.5 s/pair, 512x384 linear 12-15 s,
512x384 DPT 13-16 s.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {  # name -> (config file, image (H, W))
    "224_linear": ("dust3r_vitl_224_linear", (224, 224)),
    "512_linear": ("dust3r_vitl_512_linear", (384, 512)),
    "512_dpt": ("dust3r_vitl_512_dpt", (384, 512)),
}
OFFICIAL_CPU_S_PER_PAIR = {"224_linear": 2.5, "512_linear": 13.5, "512_dpt": 14.6}


def random_model(model_name, dtype, batch):
    """A released architecture with random weights and two random views of its image size:
    (model, params, (view1, view2), (H, W))."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, str(REPO))
    from dust3r_jax.loading import init_params
    from dust3r_jax.model import AsymmetricCroCo3DStereo, model_config
    from dust3r_jax.train.config_overrides import load_config

    config_file, (height, width) = MODELS[model_name]
    config = load_config(REPO / "configs" / f"{config_file}.py").model
    model = AsymmetricCroCo3DStereo(model_config(**{**config.to_dict(), "dtype": dtype}))
    params = jax.block_until_ready(jax.jit(lambda key: init_params(model, key))(jax.random.key(0)))
    rng = np.random.default_rng(0)
    views = tuple(
        {"img": jnp.asarray(rng.uniform(-1, 1, (batch, height, width, 3)), jnp.float32),
         "true_shape": jnp.tile(jnp.array([[height, width]], jnp.int32), (batch, 1))}
        for _ in range(2)
    )
    return model, params, views, (height, width)


def jit_forward(model, image_hw, plain_jit=False):
    """`jax.jit(model.apply)` with the compiler options `dust3r_jax.inference` uses for this image
    size ({} off CPU and at 224), or none with `plain_jit`."""
    import jax

    from dust3r_jax.inference import forward_compiler_options
    options = {} if plain_jit else forward_compiler_options(model, image_hw)
    return jax.jit(model.apply, compiler_options=options or None), options


def measure(model_name, dtype, batch, repeats, plain_jit=False):
    """Runs in the child process; returns a dict of figures."""
    import jax

    model, params, views, (height, width) = random_model(model_name, dtype, batch)
    apply, options = jit_forward(model, (height, width), plain_jit)
    start = time.perf_counter()
    compiled = apply.lower({"params": params}, *views).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled({"params": params}, *views))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled({"params": params}, *views))
        times.append(time.perf_counter() - start)
    per_pair = statistics.median(times) / batch
    stats = jax.devices()[0].memory_stats() or {}
    return {
        "model": model_name, "image": f"{height}x{width}", "dtype": dtype, "batch": batch,
        "compile_s": compile_s, "s_per_pair": per_pair, "pairs_per_s": 1 / per_pair,
        "peak_host_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "peak_device_gib": stats.get("peak_bytes_in_use", 0) / 2**30 if stats else None,
        "device": str(jax.devices()[0].platform) + (" (YNNPACK fusions off)" if options else ""), "repeats": repeats,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="224_linear,512_dpt")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "bench_inference.md"))
    parser.add_argument("--plain-jit", action="store_true",
                        help="jax.jit(model.apply) without the compiler options dust3r_jax.inference picks")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model_name, dtype, batch = args.child.split(":")
        print(json.dumps(measure(model_name, dtype, int(batch), args.repeats, args.plain_jit)))
        return
    rows = []
    for model_name in args.models.split(","):
        for dtype in args.dtypes.split(","):
            for batch in map(int, args.batches.split(",")):
                child = subprocess.run(
                    [sys.executable, __file__, "--child", f"{model_name}:{dtype}:{batch}", "--repeats", str(args.repeats)]
                    + (["--plain-jit"] if args.plain_jit else []),
                    capture_output=True, text=True, env=dict(os.environ),
                )
                if child.returncode:
                    print(f"{model_name} {dtype} batch {batch}: FAILED\n{child.stderr[-2000:]}", file=sys.stderr)
                    continue
                row = json.loads(child.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(_format([row], header=not rows[:-1]).rstrip("\n").split("\n")[-1] if rows[:-1] else _format([row]), flush=True)
    table = _format(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(f"# bench_inference ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs)\n\n{table}")
    print(f"\n{table}\nwritten to {args.out}")


def _format(rows, header=True):
    lines = []
    if header:
        lines.append("| model | image | dtype | batch | device | compile s | s/pair | pairs/s | official s/pair (CPU, fp32, b1) | peak host GiB | peak device GiB |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['image']} | {r['dtype']} | {r['batch']} | {r['device']} | {r['compile_s']:.1f} | "
            f"{r['s_per_pair']:.3g} | {r['pairs_per_s']:.1f} | {OFFICIAL_CPU_S_PER_PAIR[r['model']]} | {r['peak_host_gib']:.1f} | "
            f"{'-' if r.get('peak_device_gib') is None else format(r['peak_device_gib'], '.1f')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
