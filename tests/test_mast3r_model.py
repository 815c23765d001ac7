"""MASt3R (AsymmetricMASt3R, the catmlp+dpt head): loading, parameter counts, forward parity with the
official code (reference/mast3r, fp32, rel 1e-4) and one-line errors for what the official refuses."""
import argparse
import json

import jax
import numpy as np
import pytest

import dust3r_jax
from dust3r_jax.errors import CheckpointError, ConfigError
from dust3r_jax.loading import abstract_params
from dust3r_jax.model import AsymmetricCroCo3DStereo, AsymmetricMASt3R, model_class
from dust3r_jax.model_config import VITL_BASE_DECODER, model_config
from conftest import REFERENCE
from model_fixtures import run_model, views_from_npz
from parity import assert_close
from pth_writer import write_pth

MAST3R = REFERENCE / "mast3r"
MANIFEST = json.loads((MAST3R / "manifest.json").read_text()) if (MAST3R / "manifest.json").is_file() else None
CASES = sorted(MANIFEST["forward"].items()) if MANIFEST else []
# the released naver/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric, as its args.model builds it
RELEASED_KWARGS = dict(
    VITL_BASE_DECODER, img_size=(512, 512), head_type="catmlp+dpt", output_mode="pts3d+desc24",
    depth_mode=("exp", -float("inf"), float("inf")), conf_mode=("exp", 1, float("inf")),
    two_confs=True, desc_conf_mode=("exp", 0, float("inf")),
)


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.fixture(scope="module")
def fixture_model():
    if MANIFEST is None:
        pytest.skip(f"MASt3R fixtures not found at {MAST3R}")
    return dust3r_jax.load_model(MAST3R / MANIFEST["model"]["file"])


def test_released_config_parameter_count():
    """Official count 688,638,856 (sum of model.parameters()) less the unused mask_token (768):
    the DPT ViT-L 571,170,440 plus two head_local_features MLPs 1792 -> 7168 -> 25 * 256."""
    config = model_config(**RELEASED_KWARGS)
    assert model_class(config) is AsymmetricMASt3R
    assert _count(abstract_params(AsymmetricMASt3R(config))) == 688_638_088


def test_fixture_checkpoint_loads_as_mast3r(fixture_model):
    """The official count of the fixture (manifest) is ours plus the mask_token (dec_embed_dim)."""
    model, params = fixture_model
    assert isinstance(model, AsymmetricMASt3R)
    config = model.config
    assert (config.head_type, config.output_mode, config.two_confs) == ("catmlp+dpt", "pts3d+desc24", True)
    assert config.patch_embed_cls == "PatchEmbedDust3R" and config.landscape_only is False
    assert _count(params) + config.dec_embed_dim == MANIFEST["model"]["params"]


@pytest.mark.parametrize("case_name,file", CASES, ids=[c[0] for c in CASES])
def test_forward_matches_official(fixture_model, case_name, file):
    model, params = fixture_model
    data = np.load(MAST3R / file)
    view1, view2 = views_from_npz(data)
    (pred1, pred2), _ = run_model(model, params, view1, view2, symmetrized=case_name == "symmetrized")
    for name in data.files:
        if name.startswith(("pred1_", "pred2_")):
            pred = pred1 if name.startswith("pred1_") else pred2
            assert_close(pred[name[len("pred1_"):]], data[name], name=f"{case_name}:{name}")
    assert set(pred1) == {"pts3d", "conf", "desc", "desc_conf"}
    np.testing.assert_allclose(np.linalg.norm(np.asarray(pred1["desc"]), axis=-1), 1.0, atol=1e-5)


def test_hf_folder_loads_identically(fixture_model, tmp_path):
    """config.json (the constructor arguments, as the Hub's MASt3R folders hold them) + safetensors."""
    from dust3r_jax.checkpoints import read_pth
    from safetensors.numpy import save_file

    model, params = fixture_model
    checkpoint = read_pth(MAST3R / MANIFEST["model"]["file"])
    save_file({k: np.ascontiguousarray(v) for k, v in checkpoint["model"].items()},
              str(tmp_path / "model.safetensors"))
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.to_dict().items()
              if k not in ("dtype", "head_dtype", "param_dtype", "matmul_precision")}
    (tmp_path / "config.json").write_text(json.dumps(kwargs))
    model_hf, params_hf = dust3r_jax.load_model(tmp_path)
    assert isinstance(model_hf, AsymmetricMASt3R) and model_hf.config == model.config
    jax.tree_util.tree_map(np.testing.assert_array_equal, params_hf, params)


def test_dust3r_configs_hold_no_mast3r_fields():
    config = model_config(head_type="dpt")
    assert "two_confs" not in config and "desc_conf_mode" not in config
    assert model_class(config) is AsymmetricCroCo3DStereo


def _small_mast3r_string(**changes):
    kwargs = dict(pos_embed="'RoPE100'", head_type="'catmlp+dpt'", output_mode="'pts3d+desc24'",
                  enc_embed_dim=64, enc_depth=3, enc_num_heads=2, dec_embed_dim=32, dec_depth=10,
                  dec_num_heads=2, two_confs=True, desc_conf_mode="('exp', 0, inf)")
    kwargs.update(changes)
    return "AsymmetricMASt3R(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


@pytest.mark.parametrize("changes,message", [
    (dict(dec_depth=9), "needs dec_depth > 9"),
    (dict(head_type="'dpt'"), "MASt3R supports only 'catmlp\\+dpt'"),
    (dict(output_mode="'pts3d'"), "expects 'pts3d\\+desc<N>'"),
    (dict(desc_mode="'l1'"), "desc_mode='l1'"),
])
def test_bad_mast3r_checkpoints_are_one_line_errors(tmp_path, changes, message):
    path = tmp_path / "bad.pth"
    write_pth(path, {"model": {"downstream_head1.dpt.head.0.bias": np.zeros(128, np.float32)},
                     "args": argparse.Namespace(model=_small_mast3r_string(**changes))})
    with pytest.raises(CheckpointError, match=message) as err:
        dust3r_jax.load_model(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_catmlp_head_in_a_dust3r_string_is_refused(tmp_path):
    path = tmp_path / "bad.pth"
    string = _small_mast3r_string(two_confs=False).replace("AsymmetricMASt3R", "AsymmetricCroCo3DStereo")
    write_pth(path, {"model": {"downstream_head1.dpt.head.0.bias": np.zeros(128, np.float32)},
                     "args": argparse.Namespace(model=string)})
    with pytest.raises(CheckpointError, match="expected AsymmetricCroCo3DStereo or AsymmetricMASt3R"):
        dust3r_jax.load_model(path)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="two_confs="):
        model_config(**{**RELEASED_KWARGS, "two_confs": "yes"})
    with pytest.raises(ConfigError, match="desc_conf_mode="):
        model_config(**{**RELEASED_KWARGS, "desc_conf_mode": ("cube", 0, 1)})


def test_converted_directory_round_trip(fixture_model, tmp_path):
    model, params = fixture_model
    dust3r_jax.save_model(tmp_path / "converted", model, params)
    model_back, params_back = dust3r_jax.load_model(tmp_path / "converted")
    assert isinstance(model_back, AsymmetricMASt3R) and model_back.config == model.config
    jax.tree_util.tree_map(np.testing.assert_array_equal, params_back, params)


def test_symmetric_inference_matches_official(fixture_model):
    """Both decoder runs of one pair (the landscape pair), as sparse_ga.symmetric_inference."""
    model, params = fixture_model
    pair = np.load(MAST3R / "matching" / "pair.npz")
    view1, view2 = views_from_npz(np.load(MAST3R / "forward" / "landscape.npz"))
    results = jax.jit(lambda p, a, b: model.apply({"params": p}, a, b, method="symmetric_inference"))(
        params, view1, view2)
    for name, res in zip(("res11", "res21", "res22", "res12"), results):
        assert set(res) == {"pts3d", "conf", "desc", "desc_conf"}
        for key in res:
            assert_close(res[key][0], pair[f"{name}_{key}"], name=f"{name}_{key}")
