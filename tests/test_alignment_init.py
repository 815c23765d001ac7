"""MST initialisation and the loss/gradients at the initial state, against the official fixtures."""
import numpy as np
import pytest

from dust3r_jax.alignment import build_problem, objective, optimize, read_pairs
from dust3r_jax.alignment.init import spanning_tree
from tests.parity import assert_close
from tests.test_alignment_cases import ga_cases, load_case, per_view

# Gradients at the initial state: float32 round-off alone moves them by ~1e-4 of their largest
# magnitude (the official fixture itself differs from a float64 evaluation at the same parameters
# by 8.6e-5 for the depth gradient of ga_4views, ours by 3.1e-5), so they are compared at 1e-3.
REL_GRAD = 1e-3


@pytest.fixture(scope="module", params=["case0", "case1"])
def case(request, reference_dir):
    names = ga_cases(reference_dir)
    k = int(request.param[-1])
    if k >= len(names):
        pytest.skip("fewer GA cases")
    data, output, spec = load_case(reference_dir, names[k])
    pairs = read_pairs(output)
    return names[k], data, pairs, build_problem(pairs, min_conf_thr=3.0)


def test_spanning_tree_matches_official(case):
    name, data, pairs, _ = case
    pts3d, mst_edges, focals, poses = spanning_tree(pairs)
    assert [list(e) for e in mst_edges] == data["mst__edges"].tolist()
    assert_close(np.array(focals), data["mst__focals"], name=f"{name} mst focals")
    assert_close(poses, data["mst__im_poses"], name=f"{name} mst poses")
    for n, expected in enumerate(per_view(data, "mst__pts3d")):
        assert_close(pts3d[n], expected, name=f"{name} mst pts3d {n}")


def test_init_parameters_match_official(case):
    name, data, pairs, problem = case
    p = problem.params
    for key in ("im_poses", "im_focals", "im_pp", "pw_poses", "pw_adaptors"):
        assert_close(p[key], data[f"init__param__{key}"], name=f"{name} {key}")
    depth = objective.unpack_depth(problem.layout, p["depth"])
    padded = data["init__param__im_depthmaps"]
    for n, d in enumerate(depth):
        assert_close(d.ravel(), padded[n, :d.size], name=f"{name} log-depth {n}")


def test_init_scene_matches_official(case):
    from dust3r_jax.alignment import scene_from_params
    name, data, pairs, problem = case
    scene = scene_from_params(problem, problem.params)
    assert_close(scene.cam2world, data["init__im_poses"], name=f"{name} poses")
    assert_close(scene.focals, data["init__focals"][:, 0], name=f"{name} focals")
    assert_close(scene.principal_points, data["init__pp"], name=f"{name} pp")
    assert_close(scene.intrinsics, data["init__intrinsics"], name=f"{name} K")
    assert_close(scene.pw_poses, data["init__pw_poses"], name=f"{name} pw poses")
    assert_close(scene.pw_scale, data["init__pw_scale"], name=f"{name} pw scale")
    for n in range(pairs.n_imgs):
        assert_close(scene.depthmaps[n], data[f"init__depth__v{n}"], name=f"{name} depth {n}")
        assert_close(scene.pts3d[n], data[f"init__pts3d__v{n}"], name=f"{name} pts3d {n}")
        np.testing.assert_array_equal(scene.masks()[n], data[f"init__mask__v{n}"])


def test_init_loss_and_gradients_match_official(case):
    name, data, pairs, problem = case
    loss = optimize.loss_jit(problem.params, problem.data, problem.layout)
    assert_close(loss, data["init__loss"], name=f"{name} init loss")
    grads = optimize.grad_jit(problem.params, problem.data, problem.layout)
    for key in ("pw_poses", "im_poses", "im_focals"):
        assert_close(grads[key], data[f"init__grad__{key}"], rel=REL_GRAD, name=f"{name} grad {key}")
    padded = data["init__grad__im_depthmaps"]
    depth = objective.unpack_depth(problem.layout, grads["depth"])
    got = np.zeros_like(padded)
    for n, d in enumerate(depth):
        got[n, :d.size] = d.ravel()
    assert_close(got, padded, rel=REL_GRAD, name=f"{name} grad depth")
