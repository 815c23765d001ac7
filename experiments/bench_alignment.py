"""Benchmark of global alignment: seconds for the MST init and for 300 iterations, and peak memory.

Synthetic scenes (tests/synthetic_scenes.py) with N images of one size and a pair graph
(complete, swin, logwin; symmetrized as make_pairs does). Each configuration runs in its own
subprocess so that peak memory is that configuration's: host peak RSS on CPU, and the device's
peak bytes in use on GPU.

    python experiments/bench_alignment.py --sizes 224 --n 4,8 --graphs complete
    python experiments/bench_alignment.py --sizes 224,512x384 --n 4,8,16,32 --graphs complete,swin,logwin \
        --edge-chunk 64 --out experiments/results/bench_alignment_gpu.md

Timings: `compile` is the first call (jit compilation + a 50-iteration chunk), `iters` is a
second, full run of `--niter` iterations with the compiled chunks (what a user pays per scene
after the first). The official PyTorch aligner cannot run here (no torch); its figures on this
CPU are in the fixture manifest (ga_4views: 2.2 s for 12 pairs of 48x64, init + 300 iterations).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

GRAPHS = ("complete", "swin", "logwin")


def _parse_size(text):
    if "x" in text:
        w, h = text.split("x")  # WxH, as the DUSt3R docs write 512x384
        return int(h), int(w)
    return int(text), int(text)


def run_one(n, size, graph, niter, edge_chunk, chunk_iters, init_backend="host"):
    """Runs in the child process; returns a dict of measurements."""
    import resource

    import jax

    from dust3r_jax.alignment import build_problem, lr_schedule, optimize, read_pairs
    from tests import synthetic_scenes as synthetic

    H, W = _parse_size(size)
    edges = {"complete": synthetic.complete_pairs, "swin": synthetic.swin_pairs,
             "logwin": synthetic.logwin_pairs}[graph](n)
    t0 = time.perf_counter()
    truth = synthetic.make_scene(n, H, W, seed=0)
    output = synthetic.make_predictions(truth, edges, noise=0.01, outlier_frac=0.02, seed=0)
    t_data = time.perf_counter() - t0
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    t0 = time.perf_counter()
    problem = build_problem(read_pairs(output), stale_focal=False, edge_chunk=edge_chunk, init_backend=init_backend)
    jax.block_until_ready(problem.data)
    t_init = time.perf_counter() - t0
    del output

    lrs = lr_schedule(niter)
    chunk = min(chunk_iters, niter)
    t0 = time.perf_counter()
    params, hist = optimize.run(problem.data, problem.params, problem.layout, lrs[:chunk], problem.trainable,
                                chunk_iters=chunk)
    jax.block_until_ready(params)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    params, hist = optimize.run(problem.data, problem.params, problem.layout, lrs, problem.trainable,
                                chunk_iters=chunk)
    jax.block_until_ready(params)
    t_iters = time.perf_counter() - t0

    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    return {
        "n": n, "size": f"{W}x{H}", "graph": graph, "pairs": len(edges), "niter": niter,
        "edge_chunk": edge_chunk, "init_backend": init_backend, "device": f"{device.platform}:{getattr(device, 'device_kind', '')}",
        "data_s": round(t_data, 2), "init_s": round(t_init, 2), "compile_s": round(t_compile, 2),
        "iters_s": round(t_iters, 3), "ms_per_iter": round(1e3 * t_iters / niter, 2),
        "final_loss": float(hist[-1]),
        "host_peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "host_peak_after_data_gib": round(rss_data, 3),
        "device_peak_gib": round(stats.get("peak_bytes_in_use", 0) / 2**30, 3) if stats else None,
    }


def focal_study(seeds, n_views, size, niter, reference=None):
    """Official stale-focal MST initialisation vs the corrected one, on scenes with known geometry:
    synthetic scenes (one per seed) and, if given, the GA fixtures (their gt__K / gt__cam2world)."""
    import numpy as np

    from dust3r_jax.alignment import global_align
    from tests import synthetic_scenes as synthetic

    H, W = _parse_size(size)
    cases = []
    for seed in seeds:
        truth = synthetic.make_scene(n_views, H, W, seed=seed)
        output = synthetic.make_predictions(truth, synthetic.complete_pairs(n_views), noise=0.01,
                                            outlier_frac=0.02, seed=seed)
        cases.append((f"synthetic seed {seed} ({n_views} views {W}x{H})", output, truth["focals"],
                      truth["cam2world"]))
    if reference:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from pathlib import Path

        from tests.test_alignment_cases import ga_cases, load_case
        for name in ga_cases(Path(reference)):
            data, output, spec = load_case(Path(reference), name)
            n = spec["n_views"]
            cases.append((f"fixture {name}", output, np.array([data[f"gt__K__v{k}"][0, 0] for k in range(n)]),
                          np.stack([data[f"gt__cam2world__v{k}"] for k in range(n)])))
    lines = ["| case | init | focal err init % | focal err final % | rel. rotation err deg | "
             "rel. translation dir err deg |", "|---|---|---|---|---|---|"]
    for label, output, focals, poses in cases:
        for stale in (True, False):
            init = global_align(output, niter=0, stale_focal=stale)
            final = global_align(output, niter=niter, stale_focal=stale)
            rot, tdir = synthetic.relative_pose_errors(final.cam2world, poses)
            lines.append(f"| {label} | {'official (stale)' if stale else 'corrected'} "
                         f"| {100 * np.abs(init.focals / focals - 1).max():.2f} "
                         f"| {100 * np.abs(final.focals / focals - 1).max():.2f} | {rot:.3f} | {tdir:.2f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def fixture_comparison(reference, niter, repeats=3):
    """Our global_align against the official wall times on the same inputs (the GA fixtures, timed
    by the fixture generator on this project's CPU): first call (compilation included) and the
    median of `repeats` later calls (compiled programs reused, as for every scene of one shape)."""
    import statistics
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from dust3r_jax.alignment import global_align
    from tests.test_alignment_cases import ga_cases, load_case

    lines = ["| case | images | pairs | official s (1 thread) | official s (2 threads, 3 runs) | ours, first call s "
             "| ours, later calls s | speed-up (later vs official 1 thread) | loss ours / official |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in ga_cases(Path(reference)):
        data, output, spec = load_case(Path(reference), name)
        start = time.perf_counter()
        scene = global_align(output, niter=niter)
        first = time.perf_counter() - start
        later = []
        for _ in range(repeats):
            start = time.perf_counter()
            scene = global_align(output, niter=niter)
            later.append(time.perf_counter() - start)
        ours = statistics.median(later)
        official = spec["wall_time_s_init_plus_300_iters"]
        two = ", ".join(f"{t:.2f}" for t in spec.get("wall_time_s_init_plus_300_iters_2threads", []))
        lines.append(f"| {name} | {spec['n_views']} | {spec['n_edges']} | {official:.2f} | {two} | {first:.2f} "
                     f"| {ours:.3f} | {official / ours:.1f}x | {float(scene.loss) / float(np.asarray(data['final__loss'])):.4f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="4,8,16,32", help="image counts, comma separated")
    parser.add_argument("--sizes", default="224,512x384", help="image sizes: S (SxS) or WxH")
    parser.add_argument("--graphs", default="complete,swin,logwin")
    parser.add_argument("--sparse-from", type=int, default=16,
                        help="swin/logwin graphs only for N >= this (complete graph for every N)")
    parser.add_argument("--niter", type=int, default=300)
    parser.add_argument("--edge-chunk", type=int, default=0, help="pairs per block (0: all at once)")
    parser.add_argument("--chunk-iters", type=int, default=50)
    parser.add_argument("--max-pairs-pixels", type=float, default=float("inf"),
                        help="skip configurations with more than this many pairs x pixels")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per configuration")
    parser.add_argument("--out", default=None, help="markdown table path (default experiments/results/...)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child mode: JSON config
    parser.add_argument("--focal-study", action="store_true",
                        help="compare the official stale-focal MST init with the corrected one instead")
    parser.add_argument("--fixtures", default=None, metavar="REFERENCE_DIR",
                        help="time global_align on the official GA fixtures' inputs, beside the official "
                             "wall times stored with them (same CPU)")
    parser.add_argument("--seeds", default="0,1,2,3", help="--focal-study: synthetic scene seeds")
    parser.add_argument("--reference", default=None, help="--focal-study: fixture folder (adds the GA fixtures)")
    args = parser.parse_args(argv)

    if args.focal_study:
        size = args.sizes.split(",")[0]
        n = int(args.n.split(",")[0])
        table = focal_study([int(s) for s in args.seeds.split(",")], n, size, args.niter, args.reference)
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                       "alignment_focal_study.md")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            f.write(f"command: `python {' '.join(sys.argv)}`\n\n" + table)
        print(table)
        print(f"wrote {out}")
        return 0

    if args.fixtures:
        table = fixture_comparison(args.fixtures, args.niter)
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                       "bench_alignment_vs_official_fixtures.md")
        with open(out, "w") as f:
            f.write(f"command: `python {' '.join(sys.argv)}`\n\n" + table)
        print(table)
        return 0

    if args.one:
        cfg = json.loads(args.one)
        print("RESULT " + json.dumps(run_one(**cfg)), flush=True)
        return 0

    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"bench_alignment_{platform.node() or 'host'}.md")
    rows = []
    for size in args.sizes.split(","):
        H, W = _parse_size(size)
        for n in (int(x) for x in args.n.split(",")):
            for graph in args.graphs.split(","):
                if graph not in GRAPHS:
                    parser.error(f"--graphs: unknown graph {graph!r} (choose from {GRAPHS})")
                if graph != "complete" and n < args.sparse_from:
                    continue
                n_pairs = n * (n - 1) if graph == "complete" else None
                if n_pairs and n_pairs * H * W > args.max_pairs_pixels:
                    print(f"skip N={n} {size} {graph}: {n_pairs} pairs x {H * W} pixels", flush=True)
                    continue
                cfg = dict(n=n, size=size, graph=graph, niter=args.niter, edge_chunk=args.edge_chunk,
                           chunk_iters=args.chunk_iters)
                rows.append(_run_child(cfg, args.timeout))
                _write_table(rows, out)  # a run cut short keeps the rows it finished

    print(_write_table(rows, out))
    print(f"wrote {out}")
    return 0


def _run_child(cfg, timeout):
    """One configuration in its own process (its own peak memory); returns its row or an error row."""
    try:
        proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(cfg)], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"N={cfg['n']} {cfg['size']} {cfg['graph']}: timeout after {timeout}s", flush=True)
        return {**cfg, "error": f"timeout {timeout}s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"N={cfg['n']} {cfg['size']} {cfg['graph']}: failed ({err})", flush=True)
        return {**cfg, "error": err}
    row = json.loads(lines[-1][len("RESULT "):])
    print(json.dumps(row), flush=True)
    return row


def _write_table(rows, out):
    """Writes the Markdown table of `rows` to `out`; returns it."""
    header = ("| N | size | graph | pairs | edge chunk | device | data s | init s | compile s | iters | iters s | ms/it "
              "| host peak GiB | device peak GiB | final loss |")
    lines = [f"# bench_alignment ({platform.node()}, {os.cpu_count()} CPUs visible)", "",
             f"command: `python {' '.join(sys.argv)}`", "", header, "|" + "---|" * 15]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n']} | {r['size']} | {r['graph']} | | {r['edge_chunk']} | | | | | | | | | | "
                         f"{r['error']} |")
            continue
        lines.append(f"| {r['n']} | {r['size']} | {r['graph']} | {r['pairs']} | {r['edge_chunk']} | {r['device']} "
                     f"| {r['data_s']} | {r['init_s']} | {r['compile_s']} | {r['niter']} | {r['iters_s']} "
                     f"| {r['ms_per_iter']} | {r['host_peak_gib']} | {r['device_peak_gib']} | {r['final_loss']:.4g} |")
    table = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(table)
    return table


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.exit(main())
