"""The functional core: gradients through the unrolled optimisation, vmap, chunked pairs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dust3r_jax.alignment import align_arrays, build_problem, lr_schedule, objective, optimize, read_pairs
from dust3r_jax import xla_cpu
import synthetic_scenes as synthetic


def _problem(seed=0, n_views=3, H=12, W=16, **kw):
    truth = synthetic.make_scene(n_views, H, W, seed=seed)
    output = synthetic.make_predictions(truth, synthetic.complete_pairs(n_views), noise=0.01, seed=seed)
    return build_problem(read_pairs(output), **kw)


@pytest.mark.slow  # ~1 min on 2 shared cores: a float64 compile of 20 unrolled Adam steps and their gradient
def test_gradient_through_20_iterations_matches_finite_differences():
    problem = _problem()
    lrs = lr_schedule(20)
    with jax.enable_x64(True):
        f64 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), tree)
        data, params, trainable = f64(problem.data), f64(problem.params), f64(problem.trainable)

        def final_translation(data):
            out, _ = align_arrays(data, params, problem.layout, jnp.asarray(lrs, jnp.float64), trainable)
            # a scalar of the result: camera 1's decoded position
            from dust3r_jax.alignment.params import decode_poses
            return jnp.sum(decode_poses(out["im_poses"])[1, :3, 3])

        grads = jax.grad(final_translation)(data)
        rng = np.random.default_rng(0)
        # data[0]: first images of the pairs (pred1 / conf1), data[1]: second images (pred2 / conf2)
        for group, key in ((0, "pred"), (1, "conf")):
            assert problem.layout.side_groups[group].side == "ij"[group]
            direction = jax.tree.map(jnp.zeros_like, data)
            v = jnp.asarray(rng.normal(size=data[group][key].shape))
            direction[group][key] = v
            h = 1e-6
            plus = jax.tree.map(lambda x, d: x + h * d, data, direction)
            minus = jax.tree.map(lambda x, d: x - h * d, data, direction)
            fd = (final_translation(plus) - final_translation(minus)) / (2 * h)
            analytic = jnp.sum(grads[group][key] * v)
            assert abs(float(analytic)) > 1e-6, f"{key}: gradient vanishes, the test proves nothing"
            np.testing.assert_allclose(float(analytic), float(fd), rtol=1e-4, err_msg=key)


def test_vmap_over_scenes_equals_separate_runs():
    problems = [_problem(seed=s) for s in (0, 1)]
    layout = problems[0].layout
    assert problems[1].layout == layout
    lrs = jnp.asarray(lr_schedule(10))
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
    data = stack([p.data for p in problems])
    params = stack([p.params for p in problems])
    run = jax.jit(jax.vmap(align_arrays, in_axes=(0, 0, None, None, None)), static_argnums=2)
    batched, losses = run(data, params, layout, lrs, problems[0].trainable)
    for k, p in enumerate(problems):
        single, single_losses = jax.jit(align_arrays, static_argnums=2)(p.data, p.params, layout, lrs, p.trainable)
        np.testing.assert_allclose(losses[k], single_losses, rtol=1e-5)
        np.testing.assert_allclose(batched["im_poses"][k], single["im_poses"], rtol=1e-4, atol=1e-6)


def test_edge_chunks_give_the_same_loss_and_gradient():
    chunked = _problem(n_views=5, edge_chunk=9)  # 4 pairs per image and side -> blocks of 2 images
    full = _problem(n_views=5)
    assert all(objective._block_rows(chunked.layout, sg) == 2 for sg in chunked.layout.side_groups)
    assert chunked.data[0]["pred"].shape[0] == 6  # 5 images padded to 3 blocks of 2
    loss_full = optimize.loss_jit(full.params, full.data, full.layout)
    loss_chunked = optimize.loss_jit(chunked.params, chunked.data, chunked.layout)
    np.testing.assert_allclose(loss_chunked, loss_full, rtol=1e-6)
    g_full = optimize.grad_jit(full.params, full.data, full.layout)
    g_chunked = optimize.grad_jit(chunked.params, chunked.data, chunked.layout)
    for a, b in zip(jax.tree.leaves(g_chunked), jax.tree.leaves(g_full)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_lr_schedule_is_the_official_formula():
    lrs = lr_schedule(300, 0.01, 1e-6, "cosine")
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[150] == pytest.approx(1e-6 + (0.01 - 1e-6) / 2)
    lin = lr_schedule(4, 0.01, 0.0, "linear")
    np.testing.assert_allclose(lin, [0.01, 0.0075, 0.005, 0.0025])


def test_lr_schedule_is_the_official_trace_bitwise(reference_dir):
    """The learning rate of every iteration of the official 300-iteration cosine runs, exactly."""
    from tests.test_alignment_cases import ga_cases, load_case

    for name in ga_cases(reference_dir):
        data, _, spec = load_case(reference_dir, name)
        kw = spec["compute_global_alignment_kwargs"]
        lrs = lr_schedule(kw["niter"], kw["lr"], 1e-6, kw["schedule"])
        assert lrs.dtype == np.float32
        np.testing.assert_array_equal(lrs, data["trace__lr"], err_msg=name)


def test_cpu_compiler_options_change_speed_not_results():
    """On CPU, large layouts compile the alignment with XLA:CPU's YNNPACK fusions off (faster
    there): results must equal a plain `jax.jit`, and an XLA that does not know the option must
    still run (plain compilation)."""
    problem = _problem(n_views=4)
    loss = lambda p, d, layout: objective.loss(p, objective.prepare(layout, d), layout)
    expected_loss = jax.jit(loss, static_argnums=2)(problem.params, problem.data, problem.layout)
    expected_grad = jax.jit(jax.grad(loss), static_argnums=2)(problem.params, problem.data, problem.layout)
    if jax.default_backend() == "cpu":
        assert xla_cpu.supported(), "jaxlib no longer knows the option: update or drop it"
    assert optimize._row_pixels(problem.layout) == 3 * 12 * 16  # 3 pairs per image and side, 12x16 pixels

    def check():
        loss_fn = optimize._alignment_jit(loss, 2, static_argnums=2)
        grad_fn = optimize._alignment_jit(jax.grad(loss), 2, static_argnums=2)
        np.testing.assert_allclose(loss_fn(problem.params, problem.data, problem.layout), expected_loss, rtol=1e-6)
        got = grad_fn(problem.params, problem.data, problem.layout)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected_grad)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    with xla_cpu.using(xla_cpu.CpuPolicy(alignment_min_row_pixels=0)):  # this small layout takes the tuned path
        check()
    # an option this XLA refuses: the probe says so and the plain compilation is used
    refused = xla_cpu.CpuPolicy(alignment_min_row_pixels=0, options=(("xla_cpu_no_such_option_for_this_test", True),))
    with xla_cpu.using(refused):
        assert not xla_cpu.supported()
        assert xla_cpu.ynn_off_options() == {}
        check()


def test_alignment_options_are_one_dataclass_that_keywords_override():
    """global_align / build_problem take one AlignOptions; keywords override single options; a bad
    value or an unknown name is one InputError line naming it."""
    from dust3r_jax import global_align
    from dust3r_jax.alignment import AlignOptions, align_options
    from dust3r_jax.errors import InputError

    truth = synthetic.make_scene(3, 12, 16, seed=0)
    output = synthetic.make_predictions(truth, synthetic.complete_pairs(3), noise=0.01, seed=0)
    by_options = global_align(output, AlignOptions(niter=5, lr=0.02))
    by_keywords = global_align(output, niter=5, lr=0.02)
    assert by_options.loss == by_keywords.loss
    np.testing.assert_array_equal(by_options.cam2world, by_keywords.cam2world)
    assert align_options(AlignOptions(niter=5), lr=0.02) == AlignOptions(niter=5, lr=0.02)
    with pytest.raises(InputError, match="unknown alignment option.*nitre"):
        global_align(output, nitre=5)
    with pytest.raises(InputError, match="schedule must be one of 'cosine', 'linear', found 'cosin'"):
        AlignOptions(schedule="cosin")
    with pytest.raises(InputError, match="niter must be >= 0"):
        global_align(output, niter=-1)
