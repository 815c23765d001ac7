"""Seconds of the MST initialisation of global alignment: host (init.py, NumPy float64) against
device (init_device.py, jitted JAX), on a synthetic scene (complete symmetric graph).

    python experiments/bench_init.py --n 16 --size 224 --out experiments/results/bench_init_cpu.md

`device first` includes jit compilation (paid once per (images, pairs, image size)); `device`
is the median of --repeats later calls, as is `host`. Both start from the same `PairPredictions`
and return the same parameters (tests/test_alignment_init_device.py); PnP runs on the host in
both (OpenCV), and its share is reported apart.
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments.bench_alignment import _parse_size  # noqa: E402


def _median_s(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(n, size, repeats=3):
    """dict of seconds: host, device_first, device, pnp (host PnP calls inside either)."""
    import numpy as np

    from dust3r_jax.alignment import AlignOptions, init as host_init, init_device, params as P, read_pairs
    from tests import synthetic_scenes as synthetic
    from dust3r_jax import pnp

    H, W = _parse_size(size)
    truth = synthetic.make_scene(n, H, W, seed=0)
    pairs = read_pairs(synthetic.make_predictions(truth, synthetic.complete_pairs(n), outlier_frac=0.02, seed=0))
    params = P.default_params(pairs.imshapes, pairs.n_edges)
    frozen = {k: np.zeros(n, bool) for k in ("im_poses", "im_focals", "im_pp", "depth")}
    pnp_s = [0.0]
    fast_pnp = pnp.fast_pnp

    def timed_pnp(*args, **kwargs):
        t0 = time.perf_counter()
        out = fast_pnp(*args, **kwargs)
        pnp_s[0] += time.perf_counter() - t0
        return out
    host_init.fast_pnp = init_device.fast_pnp = timed_pnp  # count PnP time (benchmark only)

    def host():
        return host_init.init_mst(pairs, params, frozen, AlignOptions(stale_focal=False))

    def device():
        return init_device.init_mst_device(pairs, params, frozen, AlignOptions(stale_focal=False))
    t0 = time.perf_counter()
    device()
    device_first = time.perf_counter() - t0
    pnp_s[0] = 0.0
    device_s = _median_s(device, repeats)
    device_pnp = pnp_s[0] / repeats
    pnp_s[0] = 0.0
    host_s = _median_s(host, repeats)
    host_pnp = pnp_s[0] / repeats
    return {"n": n, "size": f"{W}x{H}", "pairs": pairs.n_edges, "host_s": host_s, "host_pnp_s": host_pnp,
            "device_first_s": device_first, "device_s": device_s, "device_pnp_s": device_pnp}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="16", help="comma-separated numbers of images")
    parser.add_argument("--size", default="224", help="image size, 224 or WxH (512x384)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="markdown file for the table")
    args = parser.parse_args()
    import jax
    device = jax.devices()[0]
    rows = [measure(int(n), args.size, args.repeats) for n in args.n.split(",")]
    lines = [f"# MST initialisation, host vs device ({device.platform}: {getattr(device, 'device_kind', '')})", "",
             "| images | size | pairs | host s | (PnP s) | device first call s | device s | (PnP s) | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']} | {r['size']} | {r['pairs']} | {r['host_s']:.3f} | {r['host_pnp_s']:.3f} | "
                     f"{r['device_first_s']:.3f} | {r['device_s']:.3f} | {r['device_pnp_s']:.3f} | "
                     f"{r['host_s'] / r['device_s']:.1f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
