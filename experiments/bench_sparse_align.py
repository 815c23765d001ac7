"""Benchmark of MASt3R's sparse alignment core (`dust3r_jax.sparse_align`) on the CPU, per stage.

Cases:
  fixture   the official 4-view fixture (96x128, complete symmetrised graph, ground-truth predictions)
  synth-N   N synthetic views at 96x128 of a bumpy wall seen by cameras on a line (ground-truth
            pointmaps + 0.5% depth noise, descriptors = random Fourier features of the world point,
            as the fixture's), complete graph up to 8 views, else a sliding window of 3, symmetrised
Each case runs 300 + 300 iterations twice: the first call compiles, the table reports the second
(and the first's extra as "compile"). Stages: correspondences (reciprocal matching of every pair),
canonical views + tree, coarse (3D matching) and fine (2D reprojection) optimisation.

With `--official-src /path/to/mast3r --python /path/to/venv/bin/python`, the official
`sparse_global_alignment` runs on the same inputs in a subprocess of that interpreter (torch, roma,
scipy, tqdm, trimesh, matplotlib; PyTorch never enters the project's environment), with
`symmetric_inference` replaced by the saved predictions, as the official fixture was made; its
forward_mast3r (the matching), prepare_canonical_data + condense_data, and sparse_scene_optimizer
are timed by wrapping them. `--shims DIR` is appended to its sys.path for the modules it imports but
does not use here (torchvision, cv2). The checkout needs its dust3r submodule (and dust3r's croco).

    python experiments/bench_sparse_align.py [--views 8 16] [--reference ../shared/reference]
        [--official-src DIR --python PY [--shims DIR]]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # (tests/ helpers)

H, W = 96, 128
RESULTS = Path(__file__).parent / "results" / "bench_sparse_align.md"


def fixture_case(reference):
    """(images, pair predictions) of the official 4-view fixture, read as its test reads it."""
    from tests.mast3r_fixtures import fixture_inputs
    return fixture_inputs(np.load(reference / "mast3r" / "sparse_ga" / "scene.npz"))


def synthetic_case(n, seed=0):
    """n views of the wall z = 4 + bumps(x, y), cameras at x = 0.35 k looking along +z (slight yaw)."""
    rng = np.random.default_rng(seed)
    freqs, phases = rng.normal(0, 2.0, (12, 3)), rng.uniform(0, 2 * np.pi, 12)
    focal = 110.0
    v, u = np.mgrid[:H, :W].astype(np.float64)
    rays_cam = np.stack([(u - W / 2) / focal, (v - H / 2) / focal, np.ones_like(u)], -1)
    cams, world = [], []
    for k in range(n):
        yaw = 0.1 * np.sin(k)
        R = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
        centre = np.array([0.35 * k, 0.1 * np.cos(k), 0.0])
        rays = rays_cam @ R.T
        t = np.full((H, W), 4.0)
        for _ in range(8):  # fixed point on the bumpy wall
            p = centre + t[..., None] * rays
            t = (4 + 0.3 * np.sin(p[..., 0] * 2) * np.cos(p[..., 1] * 3) - centre[2]) / rays[..., 2]
        cams.append((R, centre))
        world.append(centre + t[..., None] * rays)
    feats = [np.concatenate([np.cos(w @ freqs.T + phases), np.sin(w @ freqs.T + phases)], -1) for w in world]
    descs = [(f / np.linalg.norm(f, axis=-1, keepdims=True)).astype(np.float32) for f in feats]

    def in_cam(pts, k):
        R, centre = cams[k]
        local = (pts - centre) @ R
        return (local * (1 + 0.005 * rng.standard_normal(local.shape[:2]))[..., None]).astype(np.float32)

    def result(view, cam):
        return {"pts3d": in_cam(world[view], cam), "conf": rng.uniform(2, 6, (H, W)).astype(np.float32),
                "desc": descs[view], "desc_conf": rng.uniform(4, 12, (H, W)).astype(np.float32)}

    if n <= 8:
        edges = [(i, j) for i in range(n) for j in range(i)]
    else:
        edges = [(j, i) for i in range(n) for j in range(i + 1, min(i + 4, n))]
    preds = {(i, j): (result(i, i), result(j, i), result(j, j), result(i, j)) for i, j in edges}
    # symmetrised as make_pairs(symmetrize=True) does (the official optimiser needs both orders)
    preds.update({(j, i): (r[2], r[3], r[0], r[1]) for (i, j), r in list(preds.items())})
    images = [np.full((H, W, 3), 128, np.uint8)] * n
    return images, preds, len(edges)


def timed_run(images, preds):
    """Seconds per stage of one sparse_align (300 + 300 iterations)."""
    import jax
    from dust3r_jax.mast3r import align, kinematic, sparse_opt
    from dust3r_jax.mast3r.matching import pair_correspondences
    from dust3r_jax.mast3r.sparse_problem import build_sparse_problem

    options = align.SparseAlignOptions()
    times = {}
    t = time.perf_counter()
    imgs, pairs, directed = align.check_inputs(images, preds, options)
    corres = {key: pair_correspondences(*res, subsample=8) for key, res in pairs.items()}
    times["correspondences"] = time.perf_counter() - t
    t = time.perf_counter()
    problem = build_sparse_problem([im.shape[:2] for im in imgs], pairs, directed, corres, 8, options.matching_conf_thr)
    tree = kinematic.kinematic_tree(problem.scores, problem.imsizes, 8, options.kinematic_mode)
    tree = (int(tree[0]), tuple((int(a), int(b)) for a, b in tree[1]))
    times["canonical + tree"] = time.perf_counter() - t
    data = problem.device_arrays()
    params = sparse_opt.init_sparse_params(problem, False)
    for stage, trainable, lr in (("3d", ("quat", "trans", "log_size"), options.lr1),
                                 ("2d", ("quat", "trans", "log_size", "log_focal", "pp", "core_depth"), options.lr2)):
        t = time.perf_counter()
        params, _, loss = sparse_opt.run_stage(params, data, tree=tree, stage=stage, trainable=trainable, shared=(),
                                               niter=300, lr_base=lr, options=options)
        jax.block_until_ready(loss)
        times[f"stage {stage}"] = time.perf_counter() - t
    return times, len(problem.pt_img)


def save_case(path, images, preds):
    """The case as one .npz for the official runner: images and each pair's four results."""
    arrays = {f"img{k}": im for k, im in enumerate(images)}
    for (i, j), results in preds.items():
        for name, res in zip(("res11", "res21", "res22", "res12"), results):
            arrays.update({f"{i}_{j}__{name}__{key}": value for key, value in res.items()})
    np.savez(path, **arrays)


def official_runner(path, src, shims=None, threads=1):
    """(In the official environment.) Time mast3r's sparse_global_alignment on a saved case."""
    sys.path.insert(0, src)
    if shims:
        sys.path.append(shims)
    import torch
    import mast3r.cloud_opt.sparse_ga as sga

    torch.set_num_threads(threads)

    case = np.load(path)
    n = len([k for k in case.files if k.startswith("img")])
    names = [f"img{k}" for k in range(n)]
    keys = list(dict.fromkeys(tuple(map(int, k.split("__")[0].split("_"))) for k in case.files if "__" in k))

    def view(k):
        img = torch.from_numpy(case[f"img{k}"]).permute(2, 0, 1)[None].float() / 127.5 - 1
        return dict(img=img, true_shape=np.int32([img.shape[2:]]), idx=k, instance=names[k])

    def fake_inference(model, img1, img2, device):
        i, j = names.index(img1["instance"]), names.index(img2["instance"])
        return [{key: torch.from_numpy(case[f"{i}_{j}__{name}__{key}"])[None] for key in ("pts3d", "conf", "desc", "desc_conf")}
                for name in ("res11", "res21", "res22", "res12")]

    times = {}

    def timed(name, fn):
        def wrapper(*args, **kw):
            t = time.perf_counter()
            out = fn(*args, **kw)
            times[name] = times.get(name, 0) + time.perf_counter() - t
            return out
        return wrapper

    sga.symmetric_inference = fake_inference
    sga.forward_mast3r = timed("correspondences", sga.forward_mast3r)
    sga.prepare_canonical_data = timed("canonical + tree", sga.prepare_canonical_data)
    sga.sparse_scene_optimizer = timed("optimisation", sga.sparse_scene_optimizer)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as cache:
        sga.sparse_global_alignment(names, [(view(i), view(j)) for i, j in keys], cache, object(), subsample=8,
                                    device="cpu", lr1=0.07, niter1=300, lr2=0.014, niter2=300, opt_depth=True,
                                    matching_conf_thr=5.0, verbose=False)
    times["total"] = time.perf_counter() - t
    times["threads"] = torch.get_num_threads()
    print(json.dumps(times))


def run_official(args, images, preds):
    """Seconds per stage of the official function on the same inputs (a subprocess of --python)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/case.npz"
        save_case(path, images, preds)
        cmd = [args.python, __file__, "--official-runner", path, "--official-src", args.official_src,
               "--official-threads", str(args.official_threads)]
        out = subprocess.run(cmd + (["--shims", args.shims] if args.shims else []), capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"the official run failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--views", type=int, nargs="*", default=[8, 16])
    parser.add_argument("--reference", type=Path, default=Path(__file__).parents[1].parent / "shared" / "reference")
    parser.add_argument("--official-src", help="a naver/mast3r checkout (with its dust3r submodule)")
    parser.add_argument("--python", help="the interpreter of an environment with torch for the official code")
    parser.add_argument("--shims", help="a folder of stand-in modules for the official imports (torchvision, cv2)")
    parser.add_argument("--official-threads", type=int, default=1,
                        help="torch threads of the official run (1: torch's thread pool stalls on a busy 2-core CPU)")
    parser.add_argument("--official-runner", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.official_runner:
        return official_runner(args.official_runner, args.official_src, args.shims, args.official_threads)
    import jax
    cases = []
    if (args.reference / "mast3r" / "sparse_ga" / "scene.npz").is_file():
        images, preds = fixture_case(args.reference)
        cases.append(("fixture (4 views)", images, preds, len(preds) // 2))
    for n in args.views:
        images, preds, n_pairs = synthetic_case(n)
        cases.append((f"synth-{n}", images, preds, n_pairs))
    stages = ["correspondences", "canonical + tree", "stage 3d", "stage 2d"]
    lines = ["| case | pairs | points | " + " | ".join(f"{s} (s)" for s in stages) + " | total (s) | compile (s) |",
             "|" + "---|" * (len(stages) + 5)]
    official_lines = ["| case | correspondences (s) | canonical + tree (s) | optimisation (s) | total (s) "
                      "| ours, compiled (s) | ours, first call (s) |", "|---|---|---|---|---|---|---|"]
    for name, images, preds, n_pairs in cases:
        first, _ = timed_run(images, preds)
        times, n_points = timed_run(images, preds)
        total = sum(times.values())
        lines.append(f"| {name} | {n_pairs} | {n_points} | " + " | ".join(f"{times[s]:.2f}" for s in stages)
                     + f" | {total:.2f} | {sum(first.values()) - total:.2f} |")
        print(lines[-1], flush=True)
        if args.official_src:
            off = run_official(args, images, preds)
            official_lines.append(f"| {name} | {off['correspondences']:.2f} | {off['canonical + tree']:.2f} "
                                  f"| {off['optimisation']:.2f} | {off['total']:.2f} | {total:.2f} "
                                  f"| {sum(first.values()):.2f} |")
            print(official_lines[-1], flush=True)
    if args.official_src:
        lines += ["", f"The official sparse_global_alignment on the same inputs (torch, {off['threads']} thread(s); "
                  "its canonical views include condense_data's work and the kinematic tree):", ""] + official_lines
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    header = (f"# sparse_align on the CPU ({os.cpu_count()} cores, {H}x{W}, 300 + 300 iterations)\n\n"
              "Second call of each case (compiled); 'compile' is the first call's extra time. "
              f"OPENBLAS_NUM_THREADS={blas} (the matching's BLAS; on the project's busy 2-core CPU one thread "
              "is 2-13x faster than two for these small matmuls). `python experiments/bench_sparse_align.py`"
              "\n\n")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(header + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
