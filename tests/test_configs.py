"""Every config in configs/ builds its model with an exact parameter count, and none is left out
(as vision_transformer's `test_all_tested`): a new config needs a line here."""
from pathlib import Path

import jax
import numpy as np
import pytest

from dust3r_jax.loading import abstract_params
from dust3r_jax.model import AsymmetricCroCo3DStereo
from dust3r_jax.model_config import model_config
from dust3r_jax.train.config_overrides import load_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# parameters of the model each config builds (the ViT-L/ViT-B counts are the official ones without
# the unused mask_token, DPT aliases counted once)
PARAMETER_COUNTS = {
    "croco_v2_vitl": 532_342_016,
    "dust3r_vitl_224_linear": 532_342_016,
    "dust3r_vitl_512_linear": 532_342_016,
    "dust3r_vitl_512_dpt": 571_170_440,
    "tiny_linear": 187_008,
    "tiny_dpt": 38_626_824,
    "train_224_linear": 532_342_016,
    "train_512_linear": 532_342_016,
    "train_512_dpt": 571_170_440,
    "train_procedural": 5_225_024,
    "train_tiny": 117_888,
}


def test_every_config_is_counted():
    assert sorted(PARAMETER_COUNTS) == sorted(p.stem for p in CONFIG_DIR.glob("*.py"))


@pytest.mark.parametrize("name", sorted(PARAMETER_COUNTS))
def test_config_builds_its_model_with_the_expected_parameter_count(name):
    config = load_config(CONFIG_DIR / f"{name}.py")
    section = config.model if "model" in config else config
    model_settings = model_config(**section.to_dict())
    model = AsymmetricCroCo3DStereo(model_settings)
    count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(abstract_params(model)))
    assert count == PARAMETER_COUNTS[name]
