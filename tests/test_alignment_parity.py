"""300 iterations of the aligner and the PairViewer against the official results."""
import numpy as np
import pytest

import dust3r_jax
from dust3r_jax.geometry import rotation_angle_deg
from tests.parity import assert_close
from tests.test_alignment_cases import ga_cases, load_case, per_view

# After 300 Adam steps float32 round-off has been amplified: the official run itself moves by up
# to 4e-4 in poses between two threaded runs (README 9.3) and a float64 run of our loop differs
# from the fixture's loss trace by up to 0.4% mid-run. The criteria are used as stated:
# loss within 1%, poses within 0.1 degree / 1% translation; states at 1e-3 relative.
REL_STATE = 1e-3


@pytest.fixture(scope="module", params=["case0", "case1"])
def aligned(request, reference_dir):
    names = ga_cases(reference_dir)
    k = int(request.param[-1])
    if k >= len(names):
        pytest.skip("fewer GA cases")
    data, output, spec = load_case(reference_dir, names[k])
    kw = spec["compute_global_alignment_kwargs"]
    scene = dust3r_jax.global_align(output, mode="pointcloud", init=kw["init"], niter=kw["niter"],
                                    schedule=kw["schedule"], lr=kw["lr"])
    return names[k], data, scene


def test_final_loss_and_trace(aligned):
    name, data, scene = aligned
    assert abs(scene.loss - float(data["final__returned_loss"])) <= 0.01 * float(data["final__returned_loss"])
    trace = data["trace__loss"]
    assert scene.loss_history.shape == trace.shape
    # Mid-run the trace is chaotic (Adam with b2 = 0.9 spikes): a float64 run of our loop differs
    # from the fixture by up to 1.1% at single iterations of ga_mixed3 (0.26% of the largest loss).
    # So the whole trace is compared at 1% of its largest value, the final loss at 1% of itself.
    assert_close(scene.loss_history, trace, rel=0.01, name=f"{name} loss trace")


def test_final_poses(aligned):
    name, data, scene = aligned
    expected = data["final__im_poses"]
    angles = rotation_angle_deg(scene.cam2world[:, :3, :3], expected[:, :3, :3])
    assert angles.max() < 0.1, f"{name}: rotation off by {angles.max():.3g} deg"
    t_err = np.linalg.norm(scene.cam2world[:, :3, 3] - expected[:, :3, 3], axis=-1)
    scale = np.linalg.norm(expected[:, :3, 3], axis=-1).max()
    assert t_err.max() <= 0.01 * scale, f"{name}: translation off by {t_err.max():.3g} (scale {scale:.3g})"


def test_final_state(aligned):
    name, data, scene = aligned
    assert_close(scene.focals, data["final__focals"][:, 0], rel=REL_STATE, name=f"{name} focals")
    assert_close(scene.principal_points, data["final__pp"], name=f"{name} pp")
    assert_close(scene.pw_poses, data["final__pw_poses"], rel=REL_STATE, name=f"{name} pw poses")
    for n, depth in enumerate(per_view(data, "final__depth")):
        assert_close(scene.depthmaps[n], depth, rel=REL_STATE, name=f"{name} depth {n}")
        assert_close(scene.pts3d[n], data[f"final__pts3d__v{n}"], rel=REL_STATE, name=f"{name} pts3d {n}")
        np.testing.assert_array_equal(scene.masks(3.0)[n], data[f"final__mask__v{n}"])


def test_pair_viewer_matches_official(reference_dir):
    names = ga_cases(reference_dir, mode="PairViewer")
    assert names, "no PairViewer case"
    for name in names:
        data, output, _ = load_case(reference_dir, name)
        scene = dust3r_jax.global_align(output, mode="pair")
        assert_close(scene.cam2world, data["pv__im_poses"], name=f"{name} poses")
        assert_close(scene.focals, data["pv__focals"], name=f"{name} focals")
        assert_close(scene.principal_points, data["pv__pp"], name=f"{name} pp")
        assert_close(scene.intrinsics, data["pv__intrinsics"], name=f"{name} K")
        for n in range(2):
            assert_close(scene.depthmaps[n], data[f"pv__depth__v{n}"], name=f"{name} depth {n}")
            assert_close(scene.pts3d[n], data[f"pv__pts3d__v{n}"], name=f"{name} pts3d {n}")
            np.testing.assert_array_equal(scene.masks()[n], data[f"pv__mask__v{n}"])
            np.testing.assert_array_equal(scene.conf[n], data[f"pv__im_conf__v{n}"])
