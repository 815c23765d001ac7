"""bfloat16 compute (`load_model(..., dtype='bfloat16')`) agrees with float32 on the pointmaps.

The error is max |bf16 - fp32| / max |fp32| of each pointmap (`parity.max_rel_error`, the same
criterion as the fp32 parity tests): one number per pointmap that does not blow up at points near
the camera centre, as a per-pixel relative error does, and needs no confidence threshold, which
means nothing for the random weights of the fixtures.
"""
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dust3r_jax
from dust3r_jax.loading import init_params
from dust3r_jax.model import AsymmetricCroCo3DStereo, model_config
from dust3r_jax.train.config_overrides import load_config  # (reads configs/*.py)
from model_fixtures import run_model, views_from_npz
from parity import REL_BF16, max_rel_error

REPO = Path(__file__).resolve().parents[1]


def pointmap_errors(model32, model16, params, view1, view2):
    """(error of pred1's pts3d, error of pred2's pts3d_in_other_view) of bf16 against fp32."""
    (p1, p2), _ = run_model(model32, params, view1, view2)
    (q1, q2), _ = run_model(model16, params, view1, view2)
    assert q1["pts3d"].dtype == jnp.float32  # heads and post-processing stay float32
    return (max_rel_error(q1["pts3d"], p1["pts3d"]),
            max_rel_error(q2["pts3d_in_other_view"], p2["pts3d_in_other_view"]))


@pytest.mark.parametrize("tag", ["lin224", "lin512", "dpt512"])
def test_fixture_models(reference_dir, tag):
    data = np.load(reference_dir / "forward" / f"{tag}__landscape.npz")
    path = reference_dir / "models" / f"{tag}.pth"
    model32, params = dust3r_jax.load_model(path)
    model16, params16 = dust3r_jax.load_model(path, dtype="bfloat16")
    assert model16.config.dtype == "bfloat16"
    jax.tree.map(np.testing.assert_array_equal, params16, params)  # params stay float32
    errors = pointmap_errors(model32, model16, params, *views_from_npz(data))
    assert max(errors) < REL_BF16, errors


@pytest.mark.slow  # ViT-L/B 512 DPT, random weights: ~2 min on 2 CPU cores
def test_full_size_512_dpt():
    config = load_config(REPO / "configs" / "dust3r_vitl_512_dpt.py").model
    model32 = AsymmetricCroCo3DStereo(model_config(**{**config.to_dict(), "dtype": "float32"}))
    model16 = AsymmetricCroCo3DStereo(model_config(**{**config.to_dict(), "dtype": "bfloat16"}))
    params = jax.jit(lambda key: init_params(model32, key))(jax.random.key(0))
    rng = np.random.default_rng(0)
    height, width = 160, 224  # a small landscape pair: the trunk and head are full size
    views = [{"img": jnp.asarray(rng.uniform(-1, 1, (1, height, width, 3)), jnp.float32),
              "true_shape": jnp.array([[height, width]], jnp.int32)} for _ in range(2)]
    errors = pointmap_errors(model32, model16, params, *views)
    print("bf16 vs fp32 pointmap errors:", errors)
    assert max(errors) < REL_BF16, errors
