"""The device MST initialisation (init_device.py) against the host one (init.py)."""
import numpy as np
import pytest

from dust3r_jax.alignment import build_problem, global_align, objective, read_pairs
import synthetic_scenes as synthetic
from dust3r_jax.alignment.init import spanning_tree
from dust3r_jax.alignment.init_device import device_pts3d, spanning_tree_device
from dust3r_jax.errors import InputError
from tests.test_alignment_cases import ga_cases, load_case

# float32 on the device against float64 on the host: poses, focals and parameters agree to ~1e-5
ATOL = 1e-4


def close(got, want, name, rtol=ATOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=rtol, atol=atol,
                               err_msg=name)


@pytest.fixture(scope="module", params=["case0", "case1"])
def fixture_pairs(request, reference_dir):
    names = ga_cases(reference_dir)
    k = int(request.param[-1])
    if k >= len(names):
        pytest.skip("fewer GA cases")
    _, output, _ = load_case(reference_dir, names[k])
    return names[k], read_pairs(output)


def synthetic_pairs(n, H=24, W=32, edges=None, seed=0):
    truth = synthetic.make_scene(n, H, W, seed=seed)
    output = synthetic.make_predictions(truth, edges or synthetic.complete_pairs(n), outlier_frac=0.02, seed=seed)
    return read_pairs(output)


def assert_same_tree(pairs, stale_focal=True):
    pts3d, edges, focals, poses = spanning_tree(pairs, stale_focal=stale_focal)
    edges_d, focals_d, poses_d, arrays = spanning_tree_device(pairs, stale_focal=stale_focal)
    assert edges_d == edges
    close(focals_d, focals, "focals")
    close(poses_d, poses, "cam2world")
    for n, (got, want) in enumerate(zip(device_pts3d(pairs, arrays), pts3d)):
        close(got, want, f"world points {n}")


def test_fixture_tree_poses_focals_match_host(fixture_pairs):
    name, pairs = fixture_pairs
    assert_same_tree(pairs)


def test_fixture_init_parameters_match_host(fixture_pairs):
    name, pairs = fixture_pairs
    host = build_problem(pairs, init_backend="host")
    device = build_problem(pairs, init_backend="device")
    for key in ("im_poses", "im_focals", "im_pp", "pw_poses", "pw_adaptors"):
        close(device.params[key], host.params[key], f"{name} {key}")
    for n, (got, want) in enumerate(zip(objective.unpack_depth(device.layout, device.params["depth"]),
                                        objective.unpack_depth(host.layout, host.params["depth"]))):
        close(got, want, f"{name} log-depth {n}")


@pytest.mark.parametrize("stale_focal", [True, False])
def test_synthetic_complete_graph_matches_host(stale_focal):
    assert_same_tree(synthetic_pairs(7), stale_focal=stale_focal)


def test_sparse_graph_needs_several_sweeps():
    # a sliding window over 9 images: the tree is a chain, most edges wait for a neighbour
    assert_same_tree(synthetic_pairs(9, edges=synthetic.swin_pairs(9, winsize=1, cyclic=False)))


def test_ties_follow_scipy_order():
    # equal confidences everywhere: every score ties, so scipy's CSR order picks the tree and
    # the (score, i, j) sort the processing order
    pairs = synthetic_pairs(6)
    pairs.conf_i = [np.full_like(c, 2.0) for c in pairs.conf_i]
    pairs.conf_j = [np.full_like(c, 2.0) for c in pairs.conf_j]
    pairs.im_conf = [np.full_like(c, 2.0) for c in pairs.im_conf]
    assert_same_tree(pairs)


def test_two_images():
    assert_same_tree(synthetic_pairs(2))


def test_presets_and_global_align():
    pairs = synthetic_pairs(4)
    truth = synthetic.make_scene(4, 24, 32, seed=0)
    known = {0: truth["cam2world"][0], 2: truth["cam2world"][2]}
    host = build_problem(pairs, mode="modular", known_poses=known, init_backend="host")
    device = build_problem(pairs, mode="modular", known_poses=known, init_backend="device")
    for key in ("im_poses", "pw_poses", "im_focals"):
        close(device.params[key], host.params[key], key)
    output = synthetic.make_predictions(truth, synthetic.complete_pairs(4), outlier_frac=0.02, seed=0)
    scene = global_align(output, niter=20, init_backend="device")
    assert np.isfinite(scene.loss)


def test_unknown_backend_is_an_input_error():
    with pytest.raises(InputError, match="init_backend"):
        build_problem(synthetic_pairs(2), init_backend="gpu")
