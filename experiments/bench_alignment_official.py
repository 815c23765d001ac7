"""Global alignment: the official PyTorch PointCloudOptimizer against dust3r_jax.global_align, same
inputs, same machine, runs interleaved.

Inputs are the synthetic scenes of experiments/bench_alignment.py (tests/synthetic_scenes.py:
complete symmetrized pair graph, make_scene(seed=0), make_predictions(noise=0.01,
outlier_frac=0.02, seed=0)). They are generated once per case in this (JAX) environment and saved
to an .npz; both aligners read that file:

* official: a subprocess of `--python` (an environment with torch, roma, scipy, tqdm and OpenCV;
  PyTorch never enters the project's environment) runs this file in `--official-runner` mode,
  which imports the `dust3r` package from `--official-src` and calls
  `global_aligner(output, device='cpu', mode=GlobalAlignerMode.PointCloudOptimizer, verbose=False)`,
  then `scene.compute_global_alignment(init='mst', niter=0)` (the MST init alone: the loop does no
  iteration) and `scene.compute_global_alignment(init=None, niter=300, schedule='cosine', lr=0.01)`
  (the Adam loop alone), i.e. the official call split in two without touching its code.
* ours: a subprocess of this interpreter (`--ours-runner`) calls
  `global_align(output, mode="pointcloud", init="mst", niter=300, schedule="cosine", lr=0.01)` twice
  (first call = jit compilation included; later call = compiled programs reused), then times the
  MST init alone (`build_problem`); its 300 iterations are the later call minus that init.

Each run is its own process (its own peak RSS); official and ours alternate, and the table gives
every run and the medians.

Getting the official code (only its `dust3r/` package is imported; no model weights, no croco):

    git clone https://github.com/naver/dust3r /path/to/dust3r
    python3 -m venv --system-site-packages /path/to/venv
    /path/to/venv/bin/pip install torch roma scipy tqdm opencv-python-headless pillow

`dust3r.utils.image` imports torchvision at module level (for image-file IO only); if torchvision is
not installed, pass `--shims DIR` with a DIR/torchvision/ stand-in package: DIR is appended to
sys.path after `--official-src`, so it only supplies modules the checkout and the venv lack.

    python experiments/bench_alignment_official.py --official-src /path/to/dust3r \
        --python /path/to/venv/bin/python --case 224:4:3 --case 224:8:2 --case 224:16:1:30 \
        --case 512x384:4:1

`--case SIZE:N:REPEATS[:OFFICIAL_ITERS]`: SIZE is S (SxS) or WxH; OFFICIAL_ITERS < 300 runs only
that many official iterations after the init and extrapolates the 300-iteration time from the
per-iteration time (for cases where the full official run is too long); ours always runs 300.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from bench_alignment import _parse_size  # noqa: E402  (this folder; standard-library imports only)

NITER, LR, SCHEDULE = 300, 0.01, "cosine"
KEYS = ("view1_idx", "view2_idx", "view1_true_shape", "view2_true_shape", "pred1_pts3d", "pred1_conf",
        "pred2_pts3d_in_other_view", "pred2_conf")


def _peak_rss_gib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def make_inputs(n, size, path):
    """Synthetic `inference()`-style output for n images (complete graph) saved to `path` (.npz)."""
    import numpy as np

    from tests import synthetic_scenes as synthetic

    H, W = _parse_size(size)
    edges = synthetic.complete_pairs(n)
    truth = synthetic.make_scene(n, H, W, seed=0)
    out = synthetic.make_predictions(truth, edges, noise=0.01, outlier_frac=0.02, seed=0)
    np.savez(path, view1_idx=out["view1"]["idx"], view2_idx=out["view2"]["idx"],
             view1_true_shape=out["view1"]["true_shape"], view2_true_shape=out["view2"]["true_shape"],
             pred1_pts3d=out["pred1"]["pts3d"], pred1_conf=out["pred1"]["conf"],
             pred2_pts3d_in_other_view=out["pred2"]["pts3d_in_other_view"], pred2_conf=out["pred2"]["conf"])
    return len(edges)


def _load(path):
    import numpy as np
    with np.load(path) as f:
        return {k: f[k] for k in KEYS}


def official_runner(npz, official_src, shims, niter, threads):
    """Runs under the torch environment: the official aligner on `npz`; returns a dict."""
    sys.path.insert(0, os.path.abspath(official_src))
    if shims:
        sys.path.append(os.path.abspath(shims))
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    import dust3r
    from dust3r.cloud_opt import GlobalAlignerMode, global_aligner

    a = _load(npz)
    # the structure inference() returns: per-pair stacked tensors, idx as a tensor (the optimizer
    # calls .tolist()), true_shape (E, 2); the synthetic inputs carry no 'img'
    output = {
        "view1": {"idx": torch.from_numpy(a["view1_idx"]), "true_shape": torch.from_numpy(a["view1_true_shape"])},
        "view2": {"idx": torch.from_numpy(a["view2_idx"]), "true_shape": torch.from_numpy(a["view2_true_shape"])},
        "pred1": {"pts3d": torch.from_numpy(a["pred1_pts3d"]), "conf": torch.from_numpy(a["pred1_conf"])},
        "pred2": {"pts3d_in_other_view": torch.from_numpy(a["pred2_pts3d_in_other_view"]),
                  "conf": torch.from_numpy(a["pred2_conf"])},
    }
    del a
    rss_data = _peak_rss_gib()

    t0 = time.perf_counter()
    scene = global_aligner(output, device="cpu", mode=GlobalAlignerMode.PointCloudOptimizer, verbose=False)
    t_construct = time.perf_counter() - t0
    t0 = time.perf_counter()
    scene.compute_global_alignment(init="mst", niter=0, schedule=SCHEDULE, lr=LR)  # MST init, no iteration
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    loss = scene.compute_global_alignment(init=None, niter=niter, schedule=SCHEDULE, lr=LR)
    t_iters = time.perf_counter() - t0
    return {"construct_s": t_construct, "init_s": t_init, "iters_s": t_iters, "niter": niter,
            "ms_per_iter": 1e3 * t_iters / niter, "final_loss": float(loss), "peak_rss_gib": _peak_rss_gib(),
            "rss_after_data_gib": rss_data, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "dust3r_path": os.path.dirname(dust3r.__file__)}


def ours_runner(npz):
    """Runs in the project's environment: dust3r_jax.global_align on `npz`; returns a dict."""
    import jax

    from dust3r_jax.alignment import build_problem, global_align, read_pairs

    a = _load(npz)
    output = {"view1": {"idx": a["view1_idx"], "true_shape": a["view1_true_shape"]},
              "view2": {"idx": a["view2_idx"], "true_shape": a["view2_true_shape"]},
              "pred1": {"pts3d": a["pred1_pts3d"], "conf": a["pred1_conf"]},
              "pred2": {"pts3d_in_other_view": a["pred2_pts3d_in_other_view"], "conf": a["pred2_conf"]}}
    kw = dict(mode="pointcloud", init="mst", niter=NITER, schedule=SCHEDULE, lr=LR)
    t0 = time.perf_counter()
    global_align(output, **kw)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    scene = global_align(output, **kw)
    t_later = time.perf_counter() - t0
    # the MST init alone (compiled), to split the later call into init + 300 iterations
    t0 = time.perf_counter()
    problem = build_problem(read_pairs(output), mode="pointcloud", init="mst")
    jax.block_until_ready(problem.params)
    t_init = time.perf_counter() - t0
    t_iters = t_later - t_init  # the iterations and the decoding of the scene
    return {"first_s": t_first, "later_s": t_later, "init_s": t_init, "iters_s": t_iters,
            "final_loss": float(scene.loss), "peak_rss_gib": _peak_rss_gib(), "jax": jax.__version__,
            "device": str(jax.devices()[0])}


def _child(cmd, timeout):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(cmd[:3])}... failed (rc {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT "):])


def _med(rows, key):
    return statistics.median(r[key] for r in rows)


def _fmt_case(case, off, ours):
    size, n, pairs, oiters = case["size"], case["n"], case["pairs"], case["official_iters"]
    partial = oiters < NITER
    o300 = [r["ms_per_iter"] * NITER / 1e3 for r in off]
    o_total = [r["construct_s"] + r["init_s"] + r["ms_per_iter"] * NITER / 1e3 for r in off]
    lines = []
    for k, r in enumerate(off):
        lines.append(f"| {n} | {size} | {pairs} | official #{k + 1} | {r['construct_s']:.2f} | {r['init_s']:.2f} "
                     f"| {'≈' if partial else ''}{o300[k]:.2f} ({r['ms_per_iter']:.1f} ms/it"
                     f"{f', {oiters} it timed' if partial else ''}) | {'≈' if partial else ''}{o_total[k]:.2f} | - "
                     f"| {'n/a (' + str(oiters) + ' it)' if partial else format(r['final_loss'], '.6g')} "
                     f"| {r['peak_rss_gib']:.2f} |")
    for k, r in enumerate(ours):
        lines.append(f"| {n} | {size} | {pairs} | ours #{k + 1} | - | {r['init_s']:.2f} | {r['iters_s']:.2f} "
                     f"({1e3 * r['iters_s'] / NITER:.1f} ms/it) | {r['later_s']:.2f} | {r['first_s']:.2f} "
                     f"| {r['final_loss']:.6g} | {r['peak_rss_gib']:.2f} |")
    o_med, u_med, u_first = statistics.median(o_total), _med(ours, "later_s"), _med(ours, "first_s")
    loss_ratio = "n/a" if partial else f"{_med(ours, 'final_loss') / _med(off, 'final_loss'):.4f}"
    summary = (f"| {n} | {size} | {pairs} | {len(off)} / {len(ours)} | {_med(off, 'init_s'):.2f} "
               f"| {'≈' if partial else ''}{statistics.median(o300):.2f} | {'≈' if partial else ''}{o_med:.2f} "
               f"| {_med(ours, 'init_s'):.2f} | {_med(ours, 'iters_s'):.2f} | {u_med:.2f} | {u_first:.2f} "
               f"| {o_med / u_med:.1f}x | {o_med / u_first:.1f}x | {loss_ratio} "
               f"| {_med(off, 'peak_rss_gib'):.2f} / {_med(ours, 'peak_rss_gib'):.2f} |")
    return lines, summary


def write_report(out, cases, results, meta):
    summary = ["| images | size | pairs | runs official / ours | official init s | official 300 it s "
               "| official total s | ours init s | ours 300 it s | ours later call s | ours first call s "
               "| speed-up (later call) | speed-up (first call) | loss ours / official | peak RSS GiB official / ours |",
               "|" + "---|" * 15]
    detail = ["| images | size | pairs | run | construct s | init s | 300 it s | total s (official: construct + "
              "init + 300 it; ours: later call) | ours first call s | final loss | peak RSS GiB |",
              "|" + "---|" * 11]
    for case in cases:
        key = (case["size"], case["n"])
        if key not in results or not results[key]["official"] or not results[key]["ours"]:
            continue
        lines, row = _fmt_case(case, results[key]["official"], results[key]["ours"])
        summary.append(row)
        detail.extend(lines)
    text = "\n".join([
        "# Global alignment: official PyTorch PointCloudOptimizer vs dust3r_jax, synthetic inputs, CPU", "",
        f"date: {meta['date']}; host: {meta['host']} ({meta['cpus']} CPUs visible); load average before timing: "
        f"{meta['load']}", "",
        f"command: `{meta['command']}`", "",
        f"official: torch {meta.get('torch', '?')} with {meta.get('threads', '?')} intra-op threads "
        f"(`torch.set_num_threads`), dust3r from `{meta.get('dust3r_path', '?')}`; ours: jax "
        f"{meta.get('jax', '?')} on {meta.get('device', '?')}.", "",
        "Same inputs for both (synthetic.complete_pairs(N), make_scene(N, H, W, seed=0), make_predictions("
        "noise=0.01, outlier_frac=0.02, seed=0), saved once per case), init='mst', 300 Adam iterations, cosine "
        "schedule, lr 0.01. Official total = global_aligner construction + MST init + 300 iterations (verbose="
        "False); ours later call = a whole `global_align` call once its programs are compiled, first call = "
        "the same with jit compilation; ours 300 it = later call - init (scene decoding included). Speed-ups are official total / ours (medians). Runs alternate "
        "official, ours, official, ... each in its own process. ≈: official iterations timed on fewer than "
        "300 and scaled to 300 (the init is always complete).", "",
        "## Medians", "", *summary, "", "## Every run", "", *detail, ""])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    return text


def _parse_case(text):
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"--case {text!r}: expected SIZE:N:REPEATS[:OFFICIAL_ITERS]")
    size, n, reps = parts[0], int(parts[1]), int(parts[2])
    _parse_size(size)
    return {"size": size, "n": n, "repeats": reps, "official_iters": int(parts[3]) if len(parts) == 4 else NITER}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-src", help="folder holding the official `dust3r/` package (a naver/dust3r checkout)")
    parser.add_argument("--shims", default=None, help="folder of stand-in modules appended to sys.path (e.g. torchvision)")
    parser.add_argument("--python", help="interpreter of the environment with torch + roma + scipy + tqdm + cv2")
    parser.add_argument("--case", action="append", type=_parse_case, default=None,
                        help="SIZE:N:REPEATS[:OFFICIAL_ITERS], repeatable (default 224:4:3 and 224:8:2)")
    parser.add_argument("--sizes", default=None, help="with --n/--repeats instead of --case: sizes, comma separated")
    parser.add_argument("--n", default=None, help="image counts, comma separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for the official runs")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per run")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                      "bench_alignment_vs_official_synthetic_cpu.md"))
    parser.add_argument("--official-runner", metavar="NPZ", help=argparse.SUPPRESS)
    parser.add_argument("--ours-runner", metavar="NPZ", help=argparse.SUPPRESS)
    parser.add_argument("--official-iters", type=int, default=NITER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.official_runner:
        res = official_runner(args.official_runner, args.official_src, args.shims, args.official_iters, args.threads)
        print("RESULT " + json.dumps(res), flush=True)
        return 0
    # the project's package from this checkout (as experiments/bench_data.py does)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if args.ours_runner:
        print("RESULT " + json.dumps(ours_runner(args.ours_runner)), flush=True)
        return 0

    if not args.official_src or not args.python:
        parser.error("--official-src and --python are required")
    cases = list(args.case or [])
    if args.sizes or args.n:
        cases += [{"size": s, "n": int(n), "repeats": args.repeats, "official_iters": NITER}
                  for s in (args.sizes or "224").split(",") for n in (args.n or "4,8").split(",")]
    if not cases:
        cases = [_parse_case("224:4:3"), _parse_case("224:8:2")]

    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
            "cpus": os.cpu_count(), "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()),
            "command": "python " + " ".join(sys.argv)}
    results = {}
    script = os.path.abspath(__file__)
    with tempfile.TemporaryDirectory(prefix="bench_ga_official_") as tmp:
        for case in cases:
            n, size = case["n"], case["size"]
            npz = os.path.join(tmp, f"inputs_{size}_{n}.npz")
            case["pairs"] = make_inputs(n, size, npz)
            rows = results.setdefault((size, n), {"official": [], "ours": []})
            official_cmd = [args.python, script, "--official-runner", npz, "--official-src", args.official_src,
                            "--official-iters", str(case["official_iters"]), "--threads", str(args.threads)]
            if args.shims:
                official_cmd += ["--shims", args.shims]
            for rep in range(case["repeats"]):
                r = _child(official_cmd, args.timeout)
                rows["official"].append(r)
                meta.update({k: r[k] for k in ("torch", "threads", "dust3r_path")})
                print(f"N={n} {size} official #{rep + 1}: " + json.dumps(r), flush=True)
                r = _child([sys.executable, script, "--ours-runner", npz], args.timeout)
                rows["ours"].append(r)
                meta.update({k: r[k] for k in ("jax", "device")})
                print(f"N={n} {size} ours #{rep + 1}: " + json.dumps(r), flush=True)
                write_report(args.out, cases, results, meta)  # a run cut short keeps what it finished
            os.remove(npz)
    print(write_report(args.out, cases, results, meta))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
