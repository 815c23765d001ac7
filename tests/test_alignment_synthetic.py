"""Scenes with known geometry (independent of the official code): recovered poses vs the truth,
the stale-focal quirk vs its correction, and presets (known poses / focals)."""
import numpy as np
import pytest

from dust3r_jax.alignment import global_align
import synthetic_scenes as synthetic

N_VIEWS, H, W = 5, 36, 48


@pytest.fixture(scope="module")
def truth_and_output():
    truth = synthetic.make_scene(N_VIEWS, H, W, seed=3)
    output = synthetic.make_predictions(truth, synthetic.complete_pairs(N_VIEWS), noise=0.01,
                                        outlier_frac=0.02, seed=3)
    return truth, output


@pytest.fixture(scope="module")
def corrected(truth_and_output):
    return global_align(truth_and_output[1], stale_focal=False)


def test_relative_poses_within_one_degree(truth_and_output, corrected):
    truth, _ = truth_and_output
    rot_err, dir_err = synthetic.relative_pose_errors(corrected.cam2world, truth["cam2world"])
    assert rot_err < 1.0, f"relative rotation off by {rot_err:.3f} deg"
    assert dir_err < 5.0, f"relative translation direction off by {dir_err:.3f} deg"
    np.testing.assert_allclose(corrected.focals, truth["focals"], rtol=0.01)


def test_corrected_focal_initialisation_beats_the_official_quirk(truth_and_output, corrected):
    truth, output = truth_and_output
    official = global_align(output, stale_focal=True)
    err_official = np.abs(official.focals / truth["focals"] - 1).max()
    err_corrected = np.abs(corrected.focals / truth["focals"] - 1).max()
    assert err_corrected < err_official


def test_known_poses_and_focals_stay_fixed(truth_and_output):
    truth, output = truth_and_output
    scene = global_align(output, init="known_poses", known_poses=truth["cam2world"],
                         known_focals=truth["focals"], niter=30, pnp_own_focal=True)
    np.testing.assert_allclose(scene.cam2world, truth["cam2world"], atol=1e-5)
    np.testing.assert_allclose(scene.focals, truth["focals"], rtol=1e-5)
    # depth maps land at the true metric scale (the scale is fixed by the known poses)
    for n in range(N_VIEWS):
        ratio = np.median(scene.depthmaps[n] / truth["depth"][n])
        assert abs(ratio - 1) < 0.05


def test_modular_mode_with_some_known_focals(truth_and_output):
    truth, output = truth_and_output
    known = {0: truth["focals"][0], 2: truth["focals"][2]}
    scene = global_align(output, mode="modular", known_focals=known, niter=30, stale_focal=False)
    np.testing.assert_allclose(scene.focals[[0, 2]], truth["focals"][[0, 2]], rtol=1e-5)
    assert np.all(np.isfinite(scene.cam2world))
