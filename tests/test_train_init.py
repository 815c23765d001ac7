"""Initialising training from official checkpoints through the importers (`dust3r_jax.load_model`)."""
import json

import jax
import ml_collections
import numpy as np
import pytest

from dust3r_jax.errors import CheckpointError


def _model_section(reference_dir, name, **changes):
    entry = json.loads((reference_dir / "manifest.json").read_text())["models"][name]
    section = dict(entry["config"], landscape_only=True)  # training mode
    section.update(changes)
    return ml_collections.ConfigDict(section), reference_dir / entry["file"]


def _state(model_section, init_from):
    from dust3r_jax.train import sharding as shd
    from dust3r_jax.train.loop import build_model, load_pretrained
    from dust3r_jax.train.optimizer import make_optimizer
    from dust3r_jax.train.state import abstract_params_and_shardings, create_train_state
    from dust3r_jax.train.defaults import base_config

    model = build_model(model_section)
    mesh = shd.make_mesh((1, 1, 1), jax.devices()[:1])
    abstract, _, _ = abstract_params_and_shardings(model, mesh, shd.DEFAULT_RULES, (32, 32))
    tx, _ = make_optimizer(base_config().optim, 10, abstract)
    pretrained = load_pretrained(init_from)
    state, _, report = create_train_state(model, tx, mesh, shd.DEFAULT_RULES, (32, 32), seed=0,
                                          pretrained=pretrained, pretrained_source=str(init_from))
    return state, report, pretrained


def test_dust3r_checkpoint_initialises_every_param(reference_dir):
    section, path = _model_section(reference_dir, "lin224")
    if not path.is_file():
        pytest.skip(f"{path} missing")
    state, report, pretrained = _state(section, path)
    assert report["missing"] == [] and report["loaded"] == len(jax.tree.leaves(pretrained))
    for (key, got), want in zip(jax.tree_util.tree_flatten_with_path(state.params)[0], jax.tree.leaves(pretrained)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=jax.tree_util.keystr(key))


@pytest.mark.slow  # random init of a 10-block decoder
def test_other_head_stays_random_like_the_official_non_strict_load(reference_dir):
    """Fine-tuning with another head type: the trunk is loaded, the new head starts random."""
    section, path = _model_section(reference_dir, "dpt512", head_type="linear")
    state, report, _ = _state(section, path)
    assert report["missing"] and all(k.startswith("downstream_head") for k in report["missing"])
    assert report["unexpected"] and all(k.startswith("downstream_head") for k in report["unexpected"])


def test_checkpoint_for_another_model_size_names_the_parameter(reference_dir):
    section, path = _model_section(reference_dir, "lin224", enc_embed_dim=64)
    with pytest.raises(CheckpointError, match=r"parameter '[^']+' has shape"):
        _state(section, path)
