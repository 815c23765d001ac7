"""The official release's API (README's Python example) on the reference fixtures, Hub-id loading
without network, and one-line errors for bad arguments of the official surface.

The README example runs in two halves because the fixtures hold the network's and the aligner's
official numbers for different inputs: the network half on a checkpoint and the images of a
forward fixture, the alignment half on a GA fixture's `inference()` output.
"""
import json
import lzma
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from scipy.spatial import cKDTree

from conftest import REPO_ROOT
from dust3r_jax import (AsymmetricCroCo3DStereo, GlobalAlignerMode, find_reciprocal_matches, global_aligner,
                        inference, make_pairs, xy_grid)
from dust3r_jax.errors import CheckpointError, ConfigError, InputError
from model_fixtures import load_fixture_model
from parity import REL_FP32, assert_close
from test_alignment_cases import ga_cases, load_case
from test_alignment_parity import REL_STATE

# the README example's settings
device, batch_size, schedule, lr, niter = "cpu", 1, "cosine", 0.01, 300
HUB_ID = "naver/DUSt3R_fixture_dpt512"


def _one_line(err):
    message = str(err.value)
    assert message and "\n" not in message, message
    return message


# ---- network half: from_pretrained + load_images-style images + make_pairs + inference -----------
def _fixture_images(data):
    """The distinct images of a symmetrized forward fixture as `load_images` dicts, by letter."""
    images = {}
    for side in ("view1", "view2"):
        for e, letter in enumerate(data[f"{side}_instance"]):
            images.setdefault(str(letter), (data[f"{side}_img"][e], data[f"{side}_true_shape"][e]))
    return {letter: {"img": img.transpose(1, 2, 0)[None], "true_shape": shape[None].astype(np.int32), "idx": k,
                     "instance": str(k)} for k, (letter, (img, shape)) in enumerate(sorted(images.items()))}


@pytest.mark.parametrize("tag", ["lin224", "dpt512"])
def test_readme_example_network_half(reference_dir, tag):
    data = np.load(reference_dir / "forward" / f"{tag}__symmetrized.npz")
    by_letter = _fixture_images(data)

    model = AsymmetricCroCo3DStereo.from_pretrained(str(reference_dir / "models" / f"{tag}.pth"))
    images = list(by_letter.values())
    pairs = make_pairs(images, scene_graph='complete', prefilter=None, symmetrize=True)
    output = inference(pairs, model, device, batch_size=batch_size)

    # the fixture's pairs, found among ours by their images
    position = {(v1["idx"], v2["idx"]): e for e, (v1, v2) in enumerate(pairs)}
    rows = [position[by_letter[str(a)]["idx"], by_letter[str(b)]["idx"]]
            for a, b in zip(data["view1_instance"], data["view2_instance"])]
    for pred, key in (("pred1", "pts3d"), ("pred1", "conf"), ("pred2", "pts3d_in_other_view"), ("pred2", "conf")):
        assert_close(np.asarray(output[pred][key])[rows], data[f"{pred}_{key}"], rel=REL_FP32, name=f"{pred}.{key}")


def test_pretrained_model_is_the_flax_module_with_its_params(reference_dir):
    path = str(reference_dir / "models" / "lin224.pth")
    model = AsymmetricCroCo3DStereo.from_pretrained(path)
    module, params = load_fixture_model(path, False)
    assert isinstance(model.module, AsymmetricCroCo3DStereo) and model.config == module.config
    jax.tree_util.tree_map(np.testing.assert_array_equal, model.params, params)
    data = np.load(reference_dir / "forward" / "lin224__square.npz")
    view1, view2 = ({"img": data[f"view{k}_img"].transpose(0, 2, 3, 1), "true_shape": data[f"view{k}_true_shape"]}
                    for k in (1, 2))
    pred1, _ = model(view1, view2)  # the official forward call
    assert_close(pred1["pts3d"], data["pred1_pts3d"], name="model(view1, view2)")
    pred1_apply, _ = model.apply({"params": model.params}, view1, view2)  # the JAX way still works
    np.testing.assert_allclose(pred1_apply["pts3d"], pred1["pts3d"], rtol=1e-5, atol=1e-5)


# ---- alignment half: global_aligner + compute_global_alignment + read-outs + matching ------------
@pytest.fixture(scope="module", params=["case0", "case1"])
def aligned(request, reference_dir):
    names = ga_cases(reference_dir)
    k = int(request.param[-1])
    if k >= len(names):
        pytest.skip("fewer GA cases")
    data, output, _ = load_case(reference_dir, names[k])
    scene = global_aligner(output, device=device, mode=GlobalAlignerMode.PointCloudOptimizer)
    loss = scene.compute_global_alignment(init="mst", niter=niter, schedule=schedule, lr=lr)
    return names[k], data, scene, loss


def _example_matches(imgs, pts3d, confidence_masks):
    """The README example's matching lines, verbatim."""
    pts2d_list, pts3d_list = [], []
    for i in range(2):
        conf_i = np.asarray(confidence_masks[i])
        pts2d_list.append(xy_grid(*imgs[i].shape[:2][::-1])[conf_i])
        pts3d_list.append(np.asarray(pts3d[i])[conf_i])
    reciprocal_in_P2, nn2_in_P1, num_matches = find_reciprocal_matches(*pts3d_list)
    return pts2d_list, pts3d_list, (reciprocal_in_P2, nn2_in_P1, num_matches)


def _nn_gap(points, queries):
    """Per query: distance to its second-nearest minus its nearest neighbour among `points`."""
    d, _ = cKDTree(points).query(queries, k=2)
    return d[:, 1] - d[:, 0]


def test_readme_example_alignment_half(aligned):
    name, data, scene, loss = aligned
    expected = float(data["final__returned_loss"])
    assert abs(loss - expected) <= 0.01 * expected, f"{name}: loss {loss} vs official {expected}"

    imgs, focals, poses = scene.imgs, scene.get_focals(), scene.get_im_poses()
    pts3d, confidence_masks = scene.get_pts3d(), scene.get_masks()
    pts2d, ours_3d, (recip, nn2, num) = _example_matches(imgs, pts3d, confidence_masks)

    official_pts3d = [data[f"final__pts3d__v{i}"] for i in range(2)]
    official_masks = [data[f"final__mask__v{i}"] for i in range(2)]
    official_2d, theirs_3d, (recip0, nn20, num0) = _example_matches(imgs, official_pts3d, official_masks)
    for i in range(2):  # same confident pixels
        np.testing.assert_array_equal(pts2d[i], official_2d[i])
    # Same matches wherever a nearest neighbour is decided by more than the points' difference:
    # moving every point by at most `shift` changes a distance by at most 2 shift, so the nearest
    # of two candidates can only swap when their distances differ by at most 4 shift. The official
    # run itself moves points by that order between two threaded runs (reference README 9.3).
    shift = max(float(np.linalg.norm(a - b, axis=-1).max()) for a, b in zip(ours_3d, theirs_3d))
    decided = (_nn_gap(theirs_3d[0], theirs_3d[1]) > 4 * shift) & (_nn_gap(theirs_3d[1], theirs_3d[0])[nn20] > 4 * shift)
    np.testing.assert_array_equal(nn2[decided], nn20[decided])
    np.testing.assert_array_equal(recip[decided], recip0[decided])
    # and such near-ties are rare: ga_4views has 8 of 3061 points, ga_mixed3 none
    differ = (nn2 != nn20) | (recip != recip0)
    assert differ.mean() < 0.01, f"{name}: {int(differ.sum())} of {len(differ)} matches differ"
    assert abs(num - num0) <= 0.01 * num0, f"{name}: {num} reciprocal matches vs official {num0}"


def test_official_read_outs_have_official_shapes(aligned):
    name, data, scene, _ = aligned
    n = len(scene.imshapes)
    assert scene.get_focals().shape == (n, 1)
    assert_close(scene.get_focals(), data["final__focals"], rel=REL_STATE, name=f"{name} focals")
    assert scene.get_im_poses().shape == (n, 4, 4)
    assert scene.get_intrinsics().shape == (n, 3, 3)
    assert_close(scene.get_principal_points(), data["final__pp"], name=f"{name} pp")
    for i, (H, W) in enumerate(scene.imshapes):
        assert scene.get_pts3d()[i].shape == (H, W, 3)
        assert scene.get_depthmaps()[i].shape == (H, W)
        assert scene.get_masks()[i].dtype == bool and scene.get_masks()[i].shape == (H, W)
        np.testing.assert_array_equal(scene.get_masks()[i], data[f"final__mask__v{i}"])
        np.testing.assert_allclose(scene.get_conf()[i], np.log(data[f"final__im_conf__v{i}"]), rtol=1e-6)
        assert scene.imgs[i].shape == (H, W, 3) and 0 <= scene.imgs[i].min() and scene.imgs[i].max() <= 1
    scene.min_conf_thr = 1e9  # the attribute drives get_masks, as official
    assert not any(m.any() for m in scene.get_masks())
    scene.min_conf_thr = 3.0


def test_clean_pointcloud_returns_a_cleaned_copy(aligned):
    _, _, scene, _ = aligned
    cleaned = scene.clean_pointcloud()
    assert cleaned is not scene
    for before, after in zip(scene.im_conf, cleaned.im_conf):
        assert np.all(after <= before)
    assert sum(int(m.sum()) for m in cleaned.get_masks()) <= sum(int(m.sum()) for m in scene.get_masks())


def test_presets_fix_poses_and_focals(reference_dir):
    data, output, _ = load_case(reference_dir, ga_cases(reference_dir)[0])
    n = len({int(i) for i in output["view1"]["idx"]})
    poses = np.stack([data[f"gt__cam2world__v{i}"] for i in range(n)])
    focals = [float(data[f"gt__K__v{i}"][0, 0]) for i in range(n)]
    scene = global_aligner(output, device=device, mode=GlobalAlignerMode.ModularPointCloudOptimizer, verbose=False)
    scene.preset_pose(poses)
    scene.preset_focal(focals)
    scene.compute_global_alignment(init="known_poses", niter=5)
    np.testing.assert_allclose(scene.get_im_poses(), poses, atol=1e-5)
    np.testing.assert_allclose(scene.get_focals()[:, 0], focals, rtol=1e-5)


def test_pair_viewer_mode(reference_dir):
    names = ga_cases(reference_dir, mode="PairViewer")
    if not names:
        pytest.skip("no PairViewer case")
    data, output, _ = load_case(reference_dir, names[0])
    scene = global_aligner(output, device=device, mode=GlobalAlignerMode.PairViewer)
    assert_close(scene.get_im_poses(), data["pv__im_poses"], name="poses")
    assert scene.get_focals().shape == (2,)  # the official PairViewer's focals are (2,)
    assert_close(scene.get_focals(), data["pv__focals"], name="focals")
    with pytest.raises(ConfigError) as err:
        scene.compute_global_alignment(init="mst", niter=niter)
    assert "PairViewer" in _one_line(err)


def test_show_opens_a_viewer_or_says_why_not(reference_dir):
    names = ga_cases(reference_dir, mode="PairViewer")
    if not names:
        pytest.skip("no PairViewer case")
    _, output, _ = load_case(reference_dir, names[0])
    scene = global_aligner(output, device=device, mode=GlobalAlignerMode.PairViewer)
    try:
        import pyglet  # noqa: F401
        pytest.skip("a viewer may be available here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError) as err:
        scene.show()
    assert "viewer" in _one_line(err) and "write_glb" in str(err.value)


# ---- bad input --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ga_output(reference_dir):
    return load_case(reference_dir, ga_cases(reference_dir)[0])[1]


def test_unknown_mode_init_schedule_are_one_line_errors(ga_output):
    with pytest.raises(ConfigError) as err:
        global_aligner(ga_output, device=device, mode="BundleAdjuster")
    assert "BundleAdjuster" in _one_line(err)
    scene = global_aligner(ga_output, device=device, mode=GlobalAlignerMode.PointCloudOptimizer, verbose=False)
    with pytest.raises(InputError) as err:
        scene.compute_global_alignment(init="random", niter=1)
    assert "init" in _one_line(err)
    with pytest.raises(InputError) as err:
        scene.compute_global_alignment(init="mst", niter=1, schedule="exponential")
    assert "schedule" in _one_line(err)
    with pytest.raises(ConfigError) as err:
        global_aligner(ga_output, device=device, unknown_option=1)
    assert "unknown_option" in _one_line(err)


@pytest.mark.parametrize("bad", ["mps", "cuda:x", "tpu" if not jax.devices()[0].platform == "tpu" else "gpu:99"])
def test_devices_jax_does_not_have_are_one_line_errors(ga_output, bad):
    with pytest.raises(InputError) as err:
        global_aligner(ga_output, device=bad)
    assert repr(bad) in _one_line(err)


def test_cuda_without_a_gpu_is_a_one_line_error(reference_dir):
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is present")
    model = AsymmetricCroCo3DStereo.from_pretrained(str(reference_dir / "models" / "lin224.pth"))
    image = {"img": np.zeros((1, 32, 32, 3), np.float32), "true_shape": np.array([[32, 32]], np.int32)}
    pairs = make_pairs([dict(image, idx=0, instance="0"), dict(image, idx=1, instance="1")], symmetrize=True)
    with pytest.raises(InputError) as err:
        inference(pairs, model, "cuda", batch_size=batch_size)
    assert "'cuda'" in _one_line(err) and "GPU" in str(err.value)


# ---- Hugging Face Hub ids, offline --------------------------------------------------------------
@pytest.fixture(scope="module")
def hub_cache(reference_dir, tmp_path_factory):
    """A Hugging Face cache holding the fixture's HF folder as the Hub repository HUB_ID."""
    hf_dir = reference_dir / "models" / "dpt512_hf"
    if not hf_dir.is_dir():
        pytest.skip("no HF fixture")
    cache = tmp_path_factory.mktemp("hf_cache")
    repo = cache / ("models--" + HUB_ID.replace("/", "--"))
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    shutil.copy(hf_dir / "config.json", snapshot / "config.json")
    with lzma.open(hf_dir / "model.safetensors.xz") as src, open(snapshot / "model.safetensors", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return cache


def _run_isolated(code, **env):
    """Python `code` in a fresh process (huggingface_hub reads HF_* variables at import)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environ.update(env)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                            env=environ, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


_LOAD = f"""
import json, jax, numpy as np
from dust3r_jax import AsymmetricCroCo3DStereo
model = AsymmetricCroCo3DStereo.from_pretrained({HUB_ID!r})
leaves = jax.tree_util.tree_leaves(model.params)
print(json.dumps({{"head_type": model.config.head_type, "count": int(sum(x.size for x in leaves)),
                  "sum": float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in leaves))}}))
"""


def test_hub_id_loads_from_the_cache_offline(hub_cache, reference_dir):
    loaded = _run_isolated(_LOAD, HF_HUB_CACHE=str(hub_cache), HF_HUB_OFFLINE="1")
    _, params = load_fixture_model(str(reference_dir / "models" / "dpt512.pth"), False)
    leaves = jax.tree_util.tree_leaves(params)
    assert loaded["head_type"] == "dpt"
    assert loaded["count"] == sum(x.size for x in leaves)
    assert loaded["sum"] == pytest.approx(sum(np.abs(np.asarray(x, np.float64)).sum() for x in leaves), rel=1e-12)


_FAIL = f"""
import json
from dust3r_jax import AsymmetricCroCo3DStereo
from dust3r_jax.errors import CheckpointError
try:
    AsymmetricCroCo3DStereo.from_pretrained({HUB_ID!r})
    print(json.dumps({{"error": None}}))
except CheckpointError as err:
    print(json.dumps({{"error": str(err)}}))
"""


# without a cache huggingface_hub retries an unreachable Hub for ~25 s before giving up: slow
@pytest.mark.parametrize("network", ["offline", pytest.param("unreachable", marks=pytest.mark.slow)])
def test_hub_id_without_cache_is_a_one_line_error(tmp_path, network):
    env = {"HF_HUB_CACHE": str(tmp_path / "empty_cache")}
    if network == "offline":
        env["HF_HUB_OFFLINE"] = "1"
    else:  # a closed local port: the connection is refused at once
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    message = _run_isolated(_FAIL, **env)["error"]
    assert message and "\n" not in message
    assert "could not be downloaded" in message and HUB_ID in message and ".pth" in message


def test_paths_and_bare_names_are_not_hub_ids(reference_dir, tmp_path):
    from dust3r_jax.hub import is_hub_id, resolve_weights

    assert is_hub_id(HUB_ID)
    pth = reference_dir / "models" / "lin224.pth"
    assert resolve_weights(str(pth)) == str(pth)  # an existing path
    assert resolve_weights("dust3r_tiny") == "dust3r_tiny"  # a bare name goes on to load_model
    assert not is_hub_id("checkpoints/model.pth")  # a missing file, reported by load_model
    with pytest.raises(CheckpointError):
        AsymmetricCroCo3DStereo.from_pretrained(str(tmp_path / "missing.pth"))


def test_cli_weights_accepts_hub_ids(reference_dir, tmp_path):
    images = sorted((reference_dir / "loader" / "images").glob("*.png"))[:2]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environ.update(HF_HUB_CACHE=str(tmp_path / "empty_cache"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-m", "dust3r_jax.cli", "reconstruct", *map(str, images),
                             "--weights", HUB_ID, "--out", str(tmp_path / "out"), "--image-size", "224"],
                            capture_output=True, text=True, cwd=REPO_ROOT, env=environ, timeout=300)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "could not be downloaded" in last and HUB_ID in last, result.stderr[-2000:]
