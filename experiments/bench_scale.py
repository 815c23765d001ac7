"""Scale-out of inference and global alignment over N devices: correctness, overhead and memory.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python experiments/bench_scale.py \
        --out experiments/results/bench_scale_cpu8.md

For each device count N (1, 2, 4, 8 by default; the first N devices, a 1-D mesh):
* inference: a small random model on a complete graph of --inf-images images (symmetrized pairs),
  seconds (after a warm-up call that compiles), and the largest difference to N = 1;
* global alignment: a synthetic scene (--ga-images views at --ga-size, complete graph), seconds of
  --niter iterations (after compiling), loss difference to N = 1, and the per-device memory of the
  jitted chunk of iterations as XLA plans it (`compiled.memory_analysis()`: arguments + temporaries
  + outputs - aliased, per device of the SPMD program);
* the planned per-device memory of one --plan-images scene at --fit-size (compiled, not run);
* the largest complete-graph scene at 512x384 that fits a per-device budget (--budget-gib, 80 by
  default), found by compiling (not running) the alignment for growing image counts on N devices
  (edge_chunk as given), binary search on the image count.

On virtual CPU devices the N devices share the same cores: the seconds measure the overhead of the
sharded program, not a speed-up; the memory figures are what each device would hold.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _device_counts(requested):
    import jax
    return [n for n in requested if n <= jax.device_count()]


def bench_inference(counts, n_images, size):
    import jax
    import numpy as np

    from dust3r_jax import meshes
    from dust3r_jax.inference import inference
    from dust3r_jax.loading import init_params
    from dust3r_jax.model import AsymmetricCroCo3DStereo
    from dust3r_jax.model_config import model_config
    from dust3r_jax.pairs import make_pairs

    model = AsymmetricCroCo3DStereo(model_config(enc_embed_dim=192, enc_depth=4, enc_num_heads=3, dec_embed_dim=128,
                                                 dec_depth=2, dec_num_heads=4, head_type="linear", img_size=size))
    params = init_params(model, jax.random.key(0))
    rng = np.random.default_rng(0)
    H, W = size
    images = [{"img": rng.uniform(-1, 1, (1, H, W, 3)).astype(np.float32), "true_shape": np.array([[H, W]], np.int32),
               "idx": i, "instance": str(i)} for i in range(n_images)]
    pairs = make_pairs(images, "complete", symmetrize=True)
    rows, reference = [], None
    for n in counts:
        mesh = meshes.data_mesh(jax.devices()[:n]) if n > 1 else False
        inference(pairs, model, params, batch_size=8, verbose=False, mesh=mesh)  # compile
        t0 = time.perf_counter()
        out = inference(pairs, model, params, batch_size=8, verbose=False, mesh=mesh)
        seconds = time.perf_counter() - t0
        pts = out["pred2"]["pts3d_in_other_view"]
        reference = pts if reference is None else reference
        diff = float(np.abs(pts - reference).max() / np.abs(reference).max())
        rows.append((n, len(pairs), seconds, diff))
    return rows


def _chunk_memory(problem, chunk_iters):
    """Per-device bytes XLA plans for one jitted chunk of `chunk_iters` iterations."""
    import jax
    import jax.numpy as jnp

    from dust3r_jax.alignment import optimize

    prepared = optimize._prepare_jit(problem.layout, problem.data)
    opt_state = optimize._adam().init(problem.params)
    lrs = jnp.zeros((chunk_iters,), jnp.float32)
    compiled = jax.jit(optimize._chunk, static_argnums=0, donate_argnums=(3, 4)).lower(
        problem.layout, prepared, problem.trainable, problem.params, opt_state, lrs).compile()
    m = compiled.memory_analysis()
    return m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes


def bench_alignment(counts, n_images, size, niter, edge_chunk):
    import jax
    import numpy as np

    import dust3r_jax
    from dust3r_jax import meshes
    from dust3r_jax.alignment import build_problem, read_pairs
    from tests import synthetic_scenes as synthetic

    H, W = size
    truth = synthetic.make_scene(n_images, H, W, seed=0)
    output = synthetic.make_predictions(truth, synthetic.complete_pairs(n_images), noise=0.01, seed=0)
    rows, reference = [], None
    for n in counts:
        mesh = meshes.data_mesh(jax.devices()[:n]) if n > 1 else None
        kw = dict(niter=niter, edge_chunk=edge_chunk, chunk_iters=niter, mesh=mesh)
        dust3r_jax.global_align(output, **kw)  # compile
        t0 = time.perf_counter()
        scene = dust3r_jax.global_align(output, **kw)
        seconds = time.perf_counter() - t0
        reference = scene if reference is None else reference
        problem = build_problem(read_pairs(output), edge_chunk=edge_chunk, mesh=mesh)
        memory = _chunk_memory(problem, niter)
        rows.append((n, len(output["view1"]["idx"]), seconds, abs(scene.loss - reference.loss) / reference.loss,
                     float(np.abs(scene.cam2world - reference.cam2world).max()), memory))
    return rows


def _abstract_problem_memory(n_images, size, mesh, edge_chunk, chunk_iters=10):
    """Per-device bytes of the alignment chunk for a complete graph of `n_images` at `size`,
    compiled from shapes only (no pair data is made: `build_problem` runs on zero-cost stand-ins)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dust3r_jax import meshes
    from dust3r_jax.alignment import objective, optimize, params as P

    H, W = size
    edges = [(i, j) for i in range(n_images) for j in range(n_images) if i != j]
    slots = 1 if mesh is None else meshes.mesh_size(mesh)
    layout = objective.make_layout([(H, W)] * n_images, edges, edge_chunk, slots)
    data = []
    for sg in layout.side_groups:
        rows = len(sg.edge_ids)
        block = objective._block_rows(layout, sg)
        rows += -rows % block if block else 0
        D = len(sg.edge_ids[0])
        data.append({"pred": jax.ShapeDtypeStruct((rows, D, 3, H * W), jnp.float32),
                     "conf": jax.ShapeDtypeStruct((rows, D, H * W), jnp.float32)})
    params = P.default_params(layout.imshapes, len(edges), 20.0, np.random.default_rng(0))
    jparams = {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in params.items() if k != "depth"}
    jparams["depth"] = [jax.ShapeDtypeStruct((n_images, H * W), jnp.float32)]
    trainable = jax.tree.map(lambda x: jax.ShapeDtypeStruct((x.shape[0], 1), jnp.float32),
                             {k: v for k, v in jparams.items() if k != "depth"})
    trainable["depth"] = [jax.ShapeDtypeStruct((1, 1), jnp.float32)]
    jparams = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), jparams)
    if mesh is not None:
        def shard(tree, fn):
            return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=fn(x)), tree)
        data = shard(data, lambda x: meshes.sharded_along(mesh, 1, len(x.shape)))
        jparams = shard(jparams, lambda x: meshes.replicated(mesh))
        trainable = shard(trainable, lambda x: meshes.replicated(mesh))
    opt_state = jax.eval_shape(optimize._adam().init, jparams)
    if mesh is not None:
        opt_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=meshes.replicated(mesh)),
                                 opt_state)

    def chunk(layout, data, trainable, params, opt_state, lrs):
        return optimize._chunk(layout, objective.prepare(layout, data), trainable, params, opt_state, lrs)
    lrs = jax.ShapeDtypeStruct((chunk_iters,), jnp.float32)
    compiled = jax.jit(chunk, static_argnums=0, donate_argnums=(3, 4)).lower(
        layout, data, trainable, jparams, opt_state, lrs).compile()
    m = compiled.memory_analysis()
    return m.argument_size_in_bytes + m.temp_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes


def largest_scene(counts, size, budget_bytes, edge_chunk, max_images=512):
    """[(N, largest image count that fits, its bytes per device)] by binary search on compiled plans."""
    import jax

    from dust3r_jax import meshes

    rows = []
    for n in counts:
        mesh = meshes.data_mesh(jax.devices()[:n]) if n > 1 else None
        lo, hi, lo_bytes = 2, max_images, _abstract_problem_memory(2, size, mesh, edge_chunk)
        if lo_bytes > budget_bytes:
            rows.append((n, 0, lo_bytes))
            continue
        while hi - lo > 1:
            mid = (lo + hi) // 2
            used = _abstract_problem_memory(mid, size, mesh, edge_chunk)
            if used <= budget_bytes:
                lo, lo_bytes = mid, used
            else:
                hi = mid
        rows.append((n, lo, lo_bytes))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--inf-images", type=int, default=6)
    parser.add_argument("--inf-size", default="96x128", help="HxW of the inference images")
    parser.add_argument("--ga-images", type=int, default=12)
    parser.add_argument("--ga-size", default="96x128", help="HxW of the alignment images")
    parser.add_argument("--niter", type=int, default=100)
    parser.add_argument("--edge-chunk", type=int, default=0)
    parser.add_argument("--plan-images", type=int, default=32, help="views of the planned-memory scene")
    parser.add_argument("--budget-gib", type=float, default=80.0)
    parser.add_argument("--fit-size", default="384x512", help="HxW of the largest-scene search")
    parser.add_argument("--out", default=None, help="write the tables (markdown) here")
    args = parser.parse_args()

    import jax

    from dust3r_jax import meshes

    def hw(text):
        h, w = text.lower().split("x")
        return int(h), int(w)
    counts = _device_counts(args.devices)
    device = f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()})"
    lines = [f"# Scale-out on {device}", "",
             f"`python experiments/bench_scale.py {' '.join(sys.argv[1:])}`", ""]

    lines += [f"## Inference: {args.inf_images} images at {args.inf_size}, complete graph, batch 8 (ViT 192x4 / 128x2, linear head)", "",
              "| devices | pairs | seconds | max rel. diff to 1 device |", "|---|---|---|---|"]
    for n, pairs, seconds, diff in bench_inference(counts, args.inf_images, hw(args.inf_size)):
        lines.append(f"| {n} | {pairs} | {seconds:.2f} | {diff:.1e} |")
    print("\n".join(lines), flush=True)

    lines += ["", f"## Global alignment: {args.ga_images} views at {args.ga_size}, complete graph, {args.niter} iterations"
              f"{f', edge_chunk {args.edge_chunk}' if args.edge_chunk else ''}", "",
              "| devices | pairs | seconds | loss rel. diff | max pose diff | MiB per device (XLA plan) |",
              "|---|---|---|---|---|---|"]
    for n, pairs, seconds, loss_diff, pose_diff, memory in bench_alignment(
            counts, args.ga_images, hw(args.ga_size), args.niter, args.edge_chunk):
        lines.append(f"| {n} | {pairs} | {seconds:.2f} | {loss_diff:.1e} | {pose_diff:.1e} | {memory / 2**20:.1f} |")
    print("\n".join(lines[-len(counts) - 4:]), flush=True)

    fit = hw(args.fit_size)
    lines += ["", f"## Planned memory of one scene: {args.plan_images} views at {args.fit_size}, complete graph "
              f"({args.plan_images * (args.plan_images - 1)} pairs), compiled from shapes only", "",
              "| devices | GiB per device (XLA plan) | x of 1 device |", "|---|---|---|"]
    base = None
    for n in counts:
        mesh = meshes.data_mesh(jax.devices()[:n]) if n > 1 else None
        used = _abstract_problem_memory(args.plan_images, fit, mesh, args.edge_chunk)
        base = base or used
        lines.append(f"| {n} | {used / 2**30:.2f} | {used / base:.3f} |")
    print("\n".join(lines[-len(counts) - 4:]), flush=True)

    budget = args.budget_gib * 2**30
    lines += ["", f"## Largest complete-graph scene at {args.fit_size} within {args.budget_gib:g} GiB per device"
              f"{f' (edge_chunk {args.edge_chunk})' if args.edge_chunk else ''}", "",
              "| devices | images | pairs | GiB per device (XLA plan) |", "|---|---|---|---|"]
    for n, images, used in largest_scene(counts, fit, budget, args.edge_chunk):
        lines.append(f"| {n} | {images} | {images * (images - 1)} | {used / 2**30:.1f} |")
    print("\n".join(lines[-len(counts) - 4:]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
