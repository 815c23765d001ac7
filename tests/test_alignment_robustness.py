"""Bad predictions and bad pair graphs: a clear InputError or a documented fallback, never NaN."""
import warnings

import numpy as np
import pytest

from dust3r_jax.alignment import global_align
import synthetic_scenes as synthetic
from dust3r_jax.errors import InputError

N_VIEWS, H, W = 4, 24, 32
NITER = 30


@pytest.fixture(scope="module")
def truth():
    return synthetic.make_scene(N_VIEWS, H, W, seed=5)


def _output(truth, edges=None):
    edges = synthetic.complete_pairs(N_VIEWS) if edges is None else edges
    return synthetic.make_predictions(truth, edges, noise=0.01, seed=5)


def _assert_finite(scene):
    assert np.isfinite(scene.loss)
    assert np.all(np.isfinite(scene.cam2world)) and np.all(np.isfinite(scene.focals))
    for d, p in zip(scene.depthmaps, scene.pts3d):
        assert np.all(np.isfinite(d)) and np.all(np.isfinite(p))


def _select(output, keep):
    return {k: {kk: np.asarray(vv)[keep] for kk, vv in v.items()} for k, v in output.items()}


def test_nan_and_inf_pixels_are_ignored(truth):
    output = _output(truth)
    output["pred1"]["pts3d"][0, :3, :5] = np.nan
    output["pred2"]["pts3d_in_other_view"][1, 4, 4] = np.inf
    output["pred2"]["conf"][2, 0, :] = np.nan
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        scene = global_align(output, niter=NITER)
    _assert_finite(scene)


def test_all_zero_confidence_pair_is_dropped(truth):
    output = _output(truth)
    output["pred1"]["conf"][3] = 0.0
    with pytest.warns(RuntimeWarning, match="all-zero confidences"):
        scene = global_align(output, niter=NITER)
    _assert_finite(scene)
    assert len(scene.edges) == len(synthetic.complete_pairs(N_VIEWS)) - 1
    keep = np.arange(len(scene.edges) + 1) != 3
    reference = global_align(_select(output, keep), niter=NITER)
    np.testing.assert_allclose(scene.cam2world, reference.cam2world, atol=1e-5)


def test_duplicate_pair_keeps_the_last(truth):
    output = _output(truth)
    keep = np.r_[np.arange(len(output["view1"]["idx"])), 0]
    doubled = _select(output, keep)
    doubled["pred1"]["pts3d"][-1] *= 1.01  # the copy differs: the last one must be used
    with pytest.warns(RuntimeWarning, match="given twice"):
        scene = global_align(doubled, niter=0)
    reference = _select(doubled, np.r_[np.arange(1, len(keep))])
    expected = global_align(reference, niter=0)
    assert scene.edges == expected.edges
    np.testing.assert_allclose(scene.focals, expected.focals, rtol=1e-6)
    np.testing.assert_allclose(scene.cam2world, expected.cam2world, atol=1e-6)


def test_duplicate_images_give_coinciding_cameras():
    truth = synthetic.make_scene(3, H, W, seed=6)
    for key in truth:  # image 3 is a copy of image 2
        truth[key] = np.concatenate((truth[key], truth[key][2:3]))
    output = synthetic.make_predictions(truth, synthetic.complete_pairs(4), noise=0.01, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scene = global_align(output, niter=NITER, stale_focal=False)
    _assert_finite(scene)
    rel = np.linalg.inv(scene.cam2world[2]) @ scene.cam2world[3]
    assert np.degrees(np.arccos(np.clip((np.trace(rel[:3, :3]) - 1) / 2, -1, 1))) < 1.0
    baseline = np.linalg.norm(scene.cam2world[0, :3, 3] - scene.cam2world[2, :3, 3])
    assert np.linalg.norm(rel[:3, 3]) < 0.05 * baseline


def test_disconnected_pair_graph_is_an_input_error(truth):
    edges = [(1, 0), (0, 1), (3, 2), (2, 3)]
    with pytest.raises(InputError, match="not connected"):
        global_align(_output(truth, edges), niter=0)


def test_self_pair_is_an_input_error(truth):
    output = _output(truth, [(1, 0), (0, 1), (2, 2)])
    with pytest.raises(InputError, match="itself"):
        global_align(output, niter=0)


def test_nothing_usable_is_an_input_error(truth):
    output = _output(truth, [(1, 0), (0, 1)])
    output["pred1"]["conf"][:] = np.nan
    with pytest.warns(RuntimeWarning), pytest.raises(InputError, match="no pair with usable"):
        global_align(output, niter=0)


def test_partial_presets_need_modular_mode(truth):
    with pytest.raises(InputError, match="modular"):
        global_align(_output(truth), known_focals={0: 30.0}, niter=0)
