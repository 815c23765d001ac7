"""The train step's pieces: symmetrised batches, the two accumulation paths, and the batch sources."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.train_helpers import tiny_config


def test_symmetrize_interleaves_pairs_in_both_orders():
    from dust3r_jax.train.step import symmetrize

    view0 = {"img": jnp.array([0, 1, 2])}
    view1 = {"img": jnp.array([10, 11, 12])}
    first, second = symmetrize(view0, view1)
    assert first["img"].tolist() == [0, 10, 1, 11, 2, 12]
    assert second["img"].tolist() == [10, 0, 11, 1, 12, 2]


def test_synthetic_pairs_are_consistent_views():
    """pts3d is the depth map back-projected with the intrinsics and moved by cam2world."""
    from dust3r_jax.train.synthetic import SyntheticPairs

    pairs = SyntheticPairs(6, [(32, 16)], seed=3)
    view0, view1 = pairs.global_batch(epoch=0, batch_index=0, global_batch=4)
    for view in (view0, view1):
        assert view["img"].shape == (4, 16, 32, 3) and view["true_shape"].tolist() == [[16, 32]] * 4
        assert view["img"].min() >= -1 and view["img"].max() <= 1 and view["valid_mask"].mean() > 0.5
        k_inv = np.linalg.inv(view["camera_intrinsics"][0])
        v, u = np.nonzero(view["valid_mask"][0])
        cam = (np.stack([u, v, np.ones_like(u)], -1) @ k_inv.T) * view["depthmap"][0][v, u][:, None]
        world = cam @ view["camera_pose"][0][:3, :3].T + view["camera_pose"][0][:3, 3]
        np.testing.assert_allclose(view["pts3d"][0][v, u], world, rtol=1e-4, atol=1e-4)
    # the batch is a function of (seed, epoch, batch index) only; host rows are slices of it
    again = pairs.global_batch(0, 0, 4, rows=slice(2, 4))
    np.testing.assert_array_equal(again[0]["pts3d"], view0["pts3d"][2:4])


def test_dataset_source_reads_a_mixture_string(reference_dir):
    """`data.source='datasets'` reads the official-layout folders through the data package."""
    root = reference_dir / "datasets" / "fake" / "Co3d"
    if not root.is_dir():
        pytest.skip("no fake Co3d")
    config = tiny_config(**{"data.source": "datasets", "data.batch_size": 2,
                            "data.train_dataset": f"4 @ Co3d(split='train', ROOT='{root}', resolution=[(64, 48)])"})
    from dust3r_jax.train.sources import train_source

    source = train_source(config)
    assert source.num_batches(0) == 2
    view0, view1 = next(iter(source.host_batches(0, start_batch=1)))
    for view in (view0, view1):
        assert view["img"].shape == (2, 48, 64, 3) and view["pts3d"].shape == (2, 48, 64, 3)
        assert view["valid_mask"].dtype == bool and view["camera_pose"].shape == (2, 4, 4)


@pytest.mark.slow  # compiles the fused step and the split grad/apply pair: minutes on 2 shared cores
def test_split_accumulation_equals_fused_step():
    """Micro-batches of different shapes go through grad_fn/apply_fn: same update as the scan."""
    from dust3r_jax.train.loop import Run

    config = tiny_config(**{"data.batch_size": 8, "optim.accum_iter": 2, "model.enc_depth": 1,
                            "model.dec_depth": 1, "data.synthetic.test_pairs": 0, "data.synthetic.train_pairs": 32})
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        run = Run(config, workdir)
        batch = next(run.step_batches(0, 0))
        micro = [jax.tree.map(lambda x: x[i], batch) for i in range(2)]
        initial = jax.tree.map(np.array, run.state)  # a copy: the steps donate their state
        fused_state, fused = run.train_step(run.state, batch)
        split_state, split = run.train_step(jax.device_put(initial, run.shardings), micro)
        np.testing.assert_allclose(float(split["loss"]), float(fused["loss"]), rtol=1e-6)
        np.testing.assert_allclose(float(split["grad_norm"]), float(fused["grad_norm"]), rtol=1e-5)
        # step 0 has lr 0, so params are unchanged; the Adam moments carry the gradients
        for a, b in zip(jax.tree.leaves(split_state), jax.tree.leaves(fused_state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-6)
        run.checkpoints.close()
