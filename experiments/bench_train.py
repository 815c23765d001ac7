"""Training throughput: step time, pairs/s, peak memory (and MFU on GPU) for a training config.

    python experiments/bench_train.py --config configs/train_tiny.py
    python experiments/bench_train.py --config configs/train_224_linear.py --config.data.batch_size=16 \
        --config.model.dtype=bfloat16            # on a GPU: the full-size 224 linear model

The data is the in-memory synthetic source at the config's model resolution (the loaders are not
timed); the first `--warmup` steps (compilation) are excluded. One "pair" is one element of the
global batch; the model sees it twice (symmetrised batch). FLOPs per step come from XLA's cost
analysis of the compiled step; MFU = FLOPs / step time / the device's dense bf16 peak.
Prints a table and writes `experiments/results/bench_train_<device>_<config>.json`.
"""
import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# dense bf16 peak FLOP/s by device kind (vendor datasheets, SXM parts)
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def _peak_flops(device):
    for name, peak in PEAK_BF16.items():
        if name in device.device_kind:
            return peak
    return None


def _flops(compiled):
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float(cost.get("flops", 0.0)) if cost else 0.0


def main(argv=None):
    from dust3r_jax.train.config_overrides import apply_overrides, load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "train_tiny.py"))
    parser.add_argument("--steps", type=int, default=10, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation)")
    parser.add_argument("--resolution", default=None, help="synthetic pairs' W,H (default: the model's img_size)")
    args, overrides = parser.parse_known_args(argv)  # the rest: --config.a.b=value overrides

    import jax

    from dust3r_jax.train.loop import Run

    config = load_config(args.config, overrides)
    if args.resolution:
        width, height = (int(s) for s in args.resolution.split(","))
    elif config.data.source == "synthetic":
        width, height = config.data.synthetic.resolutions[0]
    else:
        height, width = config.model.img_size
        if config.model.patch_embed_cls == "ManyAR_PatchEmbed":
            height = height * 3 // 4  # 512x384, the first aspect ratio of the 512 stages
    needed = (args.warmup + args.steps) * config.data.batch_size * config.optim.accum_iter
    apply_overrides(config, ["--config.data.source=synthetic", f"--config.data.synthetic.resolutions=(({width},{height}),)",
                             f"--config.data.synthetic.train_pairs={needed}", "--config.data.synthetic.test_pairs=0",
                             "--config.init_from=", "--config.optim.epochs=1000"])
    with tempfile.TemporaryDirectory() as workdir:
        run = Run(config, workdir)
        step_fn = run.train_step_fn()
        batches = list(run.step_batches(0, 0))
        state = run.state
        t0 = time.perf_counter()
        lowered = step_fn.lower(state, batches[0])
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t0
        flops = _flops(compiled)
        for batch in batches[:args.warmup]:
            state, metrics = step_fn(state, batch)
        jax.block_until_ready(metrics)
        t0 = time.perf_counter()
        for batch in batches[args.warmup:]:
            state, metrics = step_fn(state, batch)
        jax.block_until_ready((state, metrics))
        seconds = (time.perf_counter() - t0) / args.steps
        run.checkpoints.close()

    device = jax.devices()[0]
    pairs = config.data.batch_size * config.optim.accum_iter
    row = {
        "config": Path(args.config).stem, "overrides": overrides, "device": f"{device.platform}:{device.device_kind}",
        "devices": jax.device_count(), "mesh": dict(run.mesh.shape), "resolution_wh": [width, height],
        "global_batch_pairs": pairs, "accum_iter": config.optim.accum_iter, "dtype": config.model.dtype,
        "compile_s": round(compile_s, 2), "step_s": seconds, "pairs_per_s": pairs / seconds,
        "images_per_s": 2 * pairs / seconds, "final_loss": float(metrics["loss"]),
        "flops_per_step": flops,
    }
    if device.platform == "cpu":
        row["peak_host_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    else:
        stats = device.memory_stats() or {}
        row["peak_device_memory_gib"] = stats.get("peak_bytes_in_use", 0) / 2**30
        peak = _peak_flops(device)
        if peak and flops:
            row["mfu_vs_bf16_peak"] = flops / seconds / (peak * jax.device_count())
    out = REPO / "experiments" / "results" / f"bench_train_{device.platform}_{row['config']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=1) + "\n")
    width_key = max(len(k) for k in row)
    for key, value in row.items():
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"{key:<{width_key}}  {shown}")
    print(f"written: {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
