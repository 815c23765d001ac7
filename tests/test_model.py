"""Model structure, importers and their errors (the numeric parity is in test_model_parity.py)."""
import json
import lzma
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dust3r_jax
from dust3r_jax.errors import CheckpointError, CrocoCheckpointError, InputError
from dust3r_jax.loading import abstract_params, init_params
from dust3r_jax.model import AsymmetricCroCo3DStereo, model_config
from dust3r_jax.train.config_overrides import load_config
from conftest import REPO_ROOT
from model_fixtures import load_fixture_model, run_model, views_from_npz
from parity import assert_close
from pth_writer import write_dust3r_checkpoint, write_pth

RELEASED = ("dust3r_vitl_224_linear", "dust3r_vitl_512_linear", "dust3r_vitl_512_dpt")


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _flat_keys(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flat_keys(v, prefix + (k,))
        else:
            yield prefix + (k,)


@pytest.mark.parametrize("name,expected", [
    ("dust3r_vitl_224_linear", 532_342_016), ("dust3r_vitl_512_linear", 532_342_016),
    ("dust3r_vitl_512_dpt", 571_170_440)])
def test_released_configs_parameter_counts(name, expected):
    """The official counts without the unused mask_token (and DPT aliases counted once)."""
    config = load_config(REPO_ROOT / "configs" / f"{name}.py")
    assert _count(abstract_params(AsymmetricCroCo3DStereo(config.model))) == expected


@pytest.mark.parametrize("name", RELEASED)
def test_released_state_dict_maps_one_to_one(reference_dir, name):
    """Every key of the real released checkpoint maps onto one of our params with the right
    shape, and every param of ours is covered (so a real checkpoint loads strictly)."""
    from dust3r_jax.checkpoints.name_map import IGNORED_KEYS, alias_target, flax_path, to_flax

    listing = json.loads((reference_dir / "models" / "official_vitl_state_dict_keys.json").read_text())
    official = listing[f"DUSt3R_ViTLarge_BaseDecoder_{name.split('vitl_')[1]}"]
    abstract = abstract_params(AsymmetricCroCo3DStereo(load_config(REPO_ROOT / "configs" / f"{name}.py").model))
    ours = dict(zip(_flat_keys(abstract), jax.tree_util.tree_leaves(abstract)))
    covered = set()
    for entry in official["state_dict"]:
        key = entry["key"]
        if IGNORED_KEYS.match(key) or alias_target(key):
            continue
        path = flax_path(key)
        assert path in ours, key
        assert to_flax(key, np.empty(entry["shape"], np.uint8)).shape == ours[path].shape, key
        covered.add(path)
    assert covered == set(ours)


def test_hf_folder_loads_identically(reference_dir, tmp_path):
    """The HF copy (config.json + xz-compressed safetensors) gives the same params as the .pth."""
    hf_dir = reference_dir / "models" / "dpt512_hf"
    if not hf_dir.is_dir():
        pytest.skip("no HF fixture")
    shutil.copy(hf_dir / "config.json", tmp_path / "config.json")
    with lzma.open(hf_dir / "model.safetensors.xz") as src, open(tmp_path / "model.safetensors", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 24)
    model_hf, params_hf = dust3r_jax.load_model(tmp_path)
    model_pth, params_pth = load_fixture_model(str(reference_dir / "models" / "dpt512.pth"), False)
    assert model_hf.config == model_pth.config
    jax.tree_util.tree_map(np.testing.assert_array_equal, params_hf, params_pth)
    data = np.load(reference_dir / "forward" / "dpt512__landscape.npz")
    pred1, pred2 = run_model(model_hf, params_hf, *views_from_npz(data))[0]
    assert_close(pred1["pts3d"], data["pred1_pts3d"])
    assert_close(pred2["pts3d_in_other_view"], data["pred2_pts3d_in_other_view"])


def test_converted_directory_round_trip_and_cli(reference_dir, tmp_path):
    source = reference_dir / "models" / "lin224.pth"
    out = tmp_path / "converted"
    result = subprocess.run([sys.executable, "-m", "dust3r_jax.cli", "convert", str(source), str(out)],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    model, params = dust3r_jax.load_model(out)
    model_ref, params_ref = load_fixture_model(str(source), False)
    assert model.config == model_ref.config
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, params_ref)
    again = subprocess.run([sys.executable, "-m", "dust3r_jax.cli", "convert", str(source), str(out)],
                           capture_output=True, text=True, cwd=REPO_ROOT)
    assert again.returncode != 0 and "already exists" in again.stderr and "Traceback" not in again.stderr


def _state_dict_of(params):
    """Our params back to an official-style state dict (torch layouts)."""
    from dust3r_jax.checkpoints.name_map import from_flax, official_key

    flat = {}
    for path, value in zip(_flat_keys(params), jax.tree_util.tree_leaves(params)):
        key = official_key(path)
        flat[key] = np.ascontiguousarray(from_flax(key, np.asarray(value)))
    return flat


def test_croco_checkpoint_initialises_second_decoder_and_random_heads(tmp_path):
    config = load_config(REPO_ROOT / "configs" / "tiny_linear.py").model
    params = init_params(AsymmetricCroCo3DStereo(config), jax.random.key(1))
    croco_sd = {k: v for k, v in _state_dict_of(params).items()
                if not k.startswith(("dec_blocks2.", "downstream_head"))}
    croco_sd["mask_token"] = np.zeros((1, 1, config.dec_embed_dim), np.float32)
    croco_sd["prediction_head.weight"] = np.zeros((16 * 16 * 3, config.dec_embed_dim), np.float32)
    kwargs = {k: config[k] for k in ("enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim",
                                     "dec_depth", "dec_num_heads", "pos_embed")}
    write_pth(tmp_path / "croco.pth", {"model": croco_sd, "croco_kwargs": kwargs})
    with pytest.raises(CrocoCheckpointError, match="looks like CroCo pre-training weights"):
        dust3r_jax.load_model(tmp_path / "croco.pth")  # random heads only when asked for
    model, loaded = dust3r_jax.load_model(tmp_path / "croco.pth", croco=True, seed=3)
    for i in range(config.dec_depth):
        jax.tree_util.tree_map(np.testing.assert_array_equal, loaded[f"dec_blocks2_{i}"], params[f"dec_blocks_{i}"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, loaded["enc_blocks_0"], params["enc_blocks_0"])
    head = np.asarray(loaded["downstream_head1"]["proj"]["kernel"])
    assert np.all(np.isfinite(head)) and np.std(head) > 0


def test_jit_with_traced_true_shape_compiles_once(reference_dir):
    """Training-mode model: portrait/landscape decided from a traced true_shape, one compilation."""
    data = np.load(reference_dir / "forward" / "lin512__manyar_mixed_batch.npz")
    model, params = load_fixture_model(str(reference_dir / "models" / "lin512.pth"), True)
    view1, view2 = views_from_npz(data)
    apply = jax.jit(model.apply)
    pred1, pred2 = apply({"params": params}, view1, view2)
    assert_close(pred1["pts3d"], data["pred1_pts3d"])
    # swap the orientation flags: same shapes, no retrace, different (transposed-grid) result
    flipped = dict(view1, true_shape=view1["true_shape"][:, ::-1])
    other, _ = apply({"params": params}, flipped, view2)
    assert apply._cache_size() == 1
    assert not np.allclose(other["pts3d"], pred1["pts3d"])


def test_training_mode_on_a_landscape_batch_equals_inference_mode(reference_dir):
    """landscape_only=True takes its all-landscape branch: the same numbers as load_model's model."""
    data = np.load(reference_dir / "forward" / "lin512__landscape.npz")
    model, params = load_fixture_model(str(reference_dir / "models" / "lin512.pth"), True)
    pred1, pred2 = run_model(model, params, *views_from_npz(data))[0]
    assert_close(pred1["pts3d"], data["pred1_pts3d"])
    assert_close(pred2["conf"], data["pred2_conf"])


def test_bfloat16_compute_is_close_to_float32(reference_dir):
    data = np.load(reference_dir / "forward" / "lin224__landscape.npz")
    model, params = load_fixture_model(str(reference_dir / "models" / "lin224.pth"), False)
    bf16 = AsymmetricCroCo3DStereo(model_config(**{**model.config.to_dict(), "dtype": "bfloat16"}))
    pred1, _ = run_model(bf16, params, *views_from_npz(data))[0]
    assert pred1["pts3d"].dtype == jnp.float32  # heads and post-processing stay float32
    err = np.abs(np.asarray(pred1["pts3d"]) - data["pred1_pts3d"]).max() / np.abs(data["pred1_pts3d"]).max()
    assert err < 0.05


def test_image_sides_must_be_multiples_of_patch():
    model = AsymmetricCroCo3DStereo(load_config(REPO_ROOT / "configs" / "tiny_linear.py").model)
    view = {"img": jnp.zeros((1, 40, 48, 3)), "true_shape": jnp.array([[40, 48]], jnp.int32)}
    with pytest.raises(InputError, match=r"40x48.*multiples of the patch size 16"):
        model.init(jax.random.key(0), view, view)


def test_checkpoint_whose_shapes_disagree_with_its_config(reference_dir, tmp_path):
    from dust3r_jax.checkpoints import read_pth

    checkpoint = read_pth(reference_dir / "models" / "lin224.pth")
    model_string = checkpoint["args"].model.replace("dec_embed_dim=64", "dec_embed_dim=128")
    write_dust3r_checkpoint(tmp_path / "bad.pth", dict(checkpoint["model"]), model_string)
    with pytest.raises(CheckpointError, match=r"bad\.pth: '.*' has shape .* but its config implies"):
        dust3r_jax.load_model(tmp_path / "bad.pth")


@pytest.mark.parametrize("maker,message", [
    (lambda p: p.write_bytes(open_fixture_half(p)), "bad.pth"),
    (lambda p: p.write_text("not a checkpoint\n"), "bad.pth"),
])
def test_unreadable_checkpoints_give_one_line_errors(tmp_path, maker, message):
    path = tmp_path / "bad.pth"
    maker(path)
    with pytest.raises(CheckpointError) as err:
        dust3r_jax.load_model(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def open_fixture_half(path):
    from conftest import REFERENCE

    data = (REFERENCE / "models" / "lin224.pth").read_bytes()
    return data[: len(data) // 2]


def test_missing_checkpoint_cli_error_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dust3r_jax.cli", "convert", str(tmp_path / "nope.pth"),
                             str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 2
    assert "nope.pth" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
