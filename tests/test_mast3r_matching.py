"""MASt3R matching: the same reciprocal matches and correspondences as the official code on the
fixture (reference/mast3r/matching/pair.npz), exactly, and the walk's other modes."""
import numpy as np
import pytest

import dust3r_jax
from dust3r_jax.errors import InputError
from dust3r_jax.mast3r.matching import extract_correspondences, fast_reciprocal_NNs, merge_corres, nearest_neighbours
from conftest import REFERENCE

PAIR = REFERENCE / "mast3r" / "matching" / "pair.npz"
RESULTS = ("11", "21", "22", "12")


@pytest.fixture(scope="module")
def pair():
    if not PAIR.is_file():
        pytest.skip(f"MASt3R matching fixture not found at {PAIR}")
    return np.load(PAIR)


def test_reciprocal_matches_are_the_official_pixels(pair):
    xy1, xy2 = fast_reciprocal_NNs(pair["res11_desc"], pair["res21_desc"], subsample_or_initxy1=8,
                                   dist="dot", block_size=2**13)
    np.testing.assert_array_equal(xy1, pair["nn_xy1"])
    np.testing.assert_array_equal(xy2, pair["nn_xy2"])


def test_correspondences_are_the_official_ones(pair):
    xy1, xy2, conf = extract_correspondences([pair[f"res{k}_desc"] for k in RESULTS],
                                             [pair[f"res{k}_desc_conf"] for k in RESULTS], subsample=8)
    np.testing.assert_array_equal(xy1, pair["corres_xy1"])
    np.testing.assert_array_equal(xy2, pair["corres_xy2"])
    np.testing.assert_allclose(conf, pair["corres_conf"], rtol=1e-6)


def test_top_level_exports():
    assert dust3r_jax.fast_reciprocal_NNs is fast_reciprocal_NNs
    assert dust3r_jax.extract_correspondences is extract_correspondences


def _brute_walk(desc1, desc2, step):
    """The official walk written plainly (full numpy scores, no memo): the reference of the modes."""
    (H1, W1, D), (H2, W2, _) = desc1.shape, desc2.shape
    a, b = desc1.reshape(-1, D), desc2.reshape(-1, D)
    y, x = np.mgrid[step // 2:H1:step, step // 2:W1:step].reshape(2, -1)
    xy1 = np.unique(x + W1 * y)
    pairs = set()
    for start in xy1:
        p1 = start
        for _ in range(10):
            p2 = int(np.argmax(a[p1] @ b.T))
            back = int(np.argmax(b[p2] @ a.T))
            if back == p1:
                pairs.add((p1, p2))
                break
            p1 = back
    return pairs


def test_walk_matches_a_plain_reimplementation():
    rng = np.random.default_rng(0)
    desc1 = rng.standard_normal((40, 56, 8)).astype(np.float32)
    desc2 = (np.roll(desc1, 3, axis=1) + 0.3 * rng.standard_normal(desc1.shape)).astype(np.float32)
    desc1 /= np.linalg.norm(desc1, axis=-1, keepdims=True)
    desc2 /= np.linalg.norm(desc2, axis=-1, keepdims=True)
    idx1, idx2 = fast_reciprocal_NNs(desc1, desc2, 4, ret_xy=False, dist="dot")
    assert set(zip(idx1.tolist(), idx2.tolist())) == _brute_walk(desc1, desc2, 4)
    assert len(idx1) > 20


def test_points_by_kd_tree_and_by_l2_agree():
    """The 3D-point variant (no dist: a KD-tree, as the official CPU path) and brute-force 'l2'."""
    rng = np.random.default_rng(1)
    pts1 = rng.standard_normal((24, 32, 3)).astype(np.float32)
    pts2 = (pts1 + 0.05 * rng.standard_normal(pts1.shape)).astype(np.float32)
    tree = fast_reciprocal_NNs(pts1, pts2, 4)
    l2 = fast_reciprocal_NNs(pts1, pts2, 4, dist="l2")
    for ours, theirs in zip(tree, l2):
        np.testing.assert_array_equal(ours, theirs)
    xy1, xy2, conf = extract_correspondences([pts1, pts2, pts2, pts1], [np.ones((24, 32))] * 4, 4, ptmap_key="pts3d")
    assert len(xy1) >= len(tree[0]) and np.all(conf == 1)


def test_initial_pixels_pixel_tol_and_basin():
    rng = np.random.default_rng(2)
    desc = rng.standard_normal((16, 24, 6)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=-1, keepdims=True)
    x, y = np.array([1, 5, 9]), np.array([2, 2, 7])
    xy1, xy2 = fast_reciprocal_NNs(desc, desc, (x, y), pixel_tol=1, dist="dot")
    np.testing.assert_array_equal(xy1, np.stack([x, y], 1)[np.argsort(x + 24 * y)])
    np.testing.assert_array_equal(xy1, xy2)  # identical maps: every pixel is its own match
    *_, basin = fast_reciprocal_NNs(desc, desc, 4, ret_basin=True, dist="dot")
    assert basin.shape == (16 * 24 + 1,) and basin.dtype == np.int32


def test_merge_corres_keeps_first_occurrences():
    idx1 = np.array([5, 2, 5, 2], np.int32)
    idx2 = np.array([1, 3, 1, 0], np.int32)
    xy1, xy2, first = merge_corres(idx1, idx2, (4, 4), (4, 4), ret_index=True)
    np.testing.assert_array_equal(first, [3, 1, 0])
    np.testing.assert_array_equal(xy1, [[2, 0], [2, 0], [1, 1]])
    np.testing.assert_array_equal(xy2, [[0, 0], [3, 0], [1, 0]])


def test_nearest_neighbours_take_the_first_of_equal_scores():
    db = np.array([[0, 1], [1, 0], [1, 0], [0, 1]], np.float32)
    np.testing.assert_array_equal(nearest_neighbours(np.array([[1, 0], [0, 1]], np.float32), db), [1, 0])


def test_bad_inputs_are_one_line_errors():
    a = np.zeros((8, 8, 24), np.float32)
    with pytest.raises(InputError, match="different widths"):
        extract_correspondences([a, a[..., :16], a, a], [np.ones((8, 8))] * 4)
    with pytest.raises(InputError, match="same D"):
        fast_reciprocal_NNs(a, a[..., :16], dist="dot")
    with pytest.raises(InputError, match="unknown dist='cos'"):
        fast_reciprocal_NNs(a, a, dist="cos")


SCENE = REFERENCE / "mast3r" / "sparse_ga" / "scene.npz"


def test_pair_correspondences_are_the_official_cache():
    """Every pair of the 4-view sparse-alignment fixture (smooth descriptors, 96x128): the cached
    correspondences exactly, their scores to float32 rounding; (j, i) is (i, j) swapped."""
    from dust3r_jax.mast3r.matching import pair_correspondences

    if not SCENE.is_file():
        pytest.skip(f"MASt3R sparse-alignment fixture not found at {SCENE}")
    scene = np.load(SCENE)
    computed = sorted({k.split("__")[1] for k in scene.files if k.startswith("pred__")})
    assert len(computed) == 6
    for key in computed:
        i, j = map(int, key.split("_"))
        results = [{"pts3d": scene[f"pred__{key}__{name}_pts3d"], "conf": scene[f"pred__{key}__{name}_conf"],
                    "desc_conf": scene[f"pred__{key}__{name}_desc_conf"], "desc": scene[f"desc__v{view}"]}
                   for name, view in (("res11", i), ("res21", j), ("res22", j), ("res12", i))]
        score, (xy1, xy2, conf) = pair_correspondences(*results, subsample=8)
        for (name, ours), swapped in zip((("xy1", xy1), ("xy2", xy2)), (xy2, xy1)):
            np.testing.assert_array_equal(ours, scene[f"corres__{key}__{name}"], err_msg=f"{key} {name}")
            np.testing.assert_array_equal(swapped, scene[f"corres__{j}_{i}__{name}"], err_msg=f"{j}_{i} {name}")
        np.testing.assert_allclose(conf, scene[f"corres__{key}__conf"], rtol=1e-6)
        np.testing.assert_allclose(score, scene[f"corres__{key}__score"], rtol=1e-6)
