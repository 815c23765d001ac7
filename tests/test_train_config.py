"""Training configs, `--config.a.b=value` overrides, and the errors a user gets for bad input."""
import math
import re
import time

import numpy as np
import pytest

from dust3r_jax.errors import CheckpointError, ConfigError
from dust3r_jax.train.config_overrides import load_config
from tests.train_helpers import REPO, TINY_CONFIG

CONFIGS = sorted((REPO / "configs").glob("train_*.py"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_with_valid_criteria_and_model(path):
    from dust3r_jax.losses import criterion_from_string
    from dust3r_jax.model_config import model_config

    config = load_config(path)
    criterion_from_string(config.train_criterion)
    criterion_from_string(config.test_criterion)
    model_config(**config.model.to_dict())  # raises ConfigError on a bad model section
    assert config.data.batch_size >= 1 and config.optim.accum_iter >= 1


@pytest.mark.parametrize("name,head,batch,accum,warmup,epochs,per_dataset", [
    ("train_224_linear", "linear", 128, 1, 10, 100, "100_000 @"),
    ("train_512_linear", "linear", 32, 2, 20, 100, "10_000 @"),
    ("train_512_dpt", "dpt", 32, 2, 15, 90, "10_000 @"),
])
def test_published_stages_have_official_hyperparameters(name, head, batch, accum, warmup, epochs, per_dataset):
    config = load_config(REPO / "configs" / f"{name}.py")
    assert config.model.head_type == head
    assert config.train_criterion == "ConfLoss(Regr3D(L21, norm_mode='avg_dis'), alpha=0.2)"
    assert config.test_criterion == "Regr3D_ScaleShiftInv(L21, gt_scale=True)"
    assert (config.optim.lr, config.optim.min_lr) == (1e-4, 1e-6)
    assert (config.optim.b1, config.optim.b2, config.optim.weight_decay) == (0.9, 0.95, 0.05)
    assert (config.data.batch_size, config.optim.accum_iter) == (batch, accum)  # 8 GPUs x 16 or x 4
    assert (config.optim.warmup_epochs, config.optim.epochs) == (warmup, epochs)
    mix = config.data.train_dataset
    for dataset in ("Habitat", "BlendedMVS", "MegaDepth", "ARKitScenes", "Co3d", "StaticThings3D", "ScanNetpp"):
        assert f"{per_dataset} {dataset}(" in mix
    assert mix.count("transform=ColorJitter") == 7
    if name != "train_224_linear":
        assert config.model.patch_embed_cls == "ManyAR_PatchEmbed"
        assert "(512, 160)" in mix and "MegaDepth(split='val', resolution=(512,336)" in config.data.test_dataset


def test_overrides_are_typed_by_the_key_they_replace():
    config = load_config(TINY_CONFIG, ["--config.optim.lr=3e-4", "--config.optim.epochs=7", "--config.mesh.shape=(2,2,2)",
                                       "--config.checkpoint.async_save=false", "--config.init_from=/x/y.pth",
                                       "--config.optim.warmup_epochs=2", "--config.seed", "3",
                                       "--config.data.roots.Procedural=data/p"])
    assert config.optim.lr == 3e-4 and config.optim.epochs == 7 and tuple(config.mesh.shape) == (2, 2, 2)
    assert config.checkpoint.async_save is False and config.init_from == "/x/y.pth" and config.seed == 3
    assert isinstance(config.optim.warmup_epochs, float) and config.optim.warmup_epochs == 2.0
    assert config.data.roots.Procedural == "data/p"


@pytest.mark.parametrize("override,named", [
    ("--config.optim.nope=1", "'optim.nope' does not exist"),
    ("--config.nope.lr=1", "'nope.lr' does not exist"),
    ("--config.data.roots.Nope=/x", "'data.roots.Nope' does not exist"),
    ("--config.optim.epochs=ten", "config.optim.epochs=ten"),
    ("--config.optim=3", "config.optim=3"),
    ("--workdri", "--workdri"),
])
def test_bad_override_raises_one_line_config_error_naming_the_key(override, named):
    with pytest.raises(ConfigError, match=re.escape(named)) as err:
        load_config(TINY_CONFIG, [override])
    assert "\n" not in str(err.value)


def test_cli_reports_unknown_key_without_traceback(tmp_path, capsys):
    from dust3r_jax.cli import main

    code = main(["train", "--config", str(TINY_CONFIG), "--workdir", str(tmp_path), "--config.optim.lrr=1"])
    err = capsys.readouterr().err
    assert code == 2 and "'optim.lrr' does not exist" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.py")
    broken = tmp_path / "broken.py"
    broken.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no get_config"):
        load_config(broken)


def test_pretrained_param_with_wrong_shape_names_it():
    import jax

    from dust3r_jax.train.state import merge_pretrained

    abstract = {"enc_norm": {"scale": jax.ShapeDtypeStruct((4,), np.float32)},
                "head": {"kernel": jax.ShapeDtypeStruct((4, 2), np.float32)}}
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), abstract)
    with pytest.raises(CheckpointError, match="'enc_norm/scale' has shape \\(5,\\)"):
        merge_pretrained(lambda: None, {"enc_norm": {"scale": np.ones(5)}}, (abstract, shardings), "ckpt.pth")
    with pytest.raises(CheckpointError, match="none of its parameters"):
        merge_pretrained(lambda: None, {"other": np.ones(5)}, (abstract, shardings), "ckpt.pth")
    # non-strict like the official load: a missing head stays random, the rest is loaded
    random = {"enc_norm": {"scale": np.zeros(4, np.float32)}, "head": {"kernel": np.full((4, 2), 7, np.float32)}}
    merged, report = merge_pretrained(lambda: random, {"enc_norm": {"scale": np.ones(4)}, "extra": np.ones(1)},
                                      (abstract, shardings), "ckpt.pth")
    assert np.all(np.asarray(merged["enc_norm"]["scale"]) == 1) and np.all(np.asarray(merged["head"]["kernel"]) == 7)
    assert report == {"loaded": 1, "missing": ["head/kernel"], "unexpected": ["extra"]}


def test_non_finite_loss_stops_training_naming_the_step():
    """A NaN loss (e.g. NaN depth that reached pts3d in a valid pixel) is never logged silently."""
    from types import SimpleNamespace

    from dust3r_jax.train.loop import NonFiniteLossError, _report

    run = SimpleNamespace(global_batch=2, accum=1, steps_per_epoch=10, schedule=lambda k: 0.0,
                          logger=SimpleNamespace(write=lambda *a: None))
    window = [{"loss": np.float32(1.0), "finite": True}, {"loss": np.float32(math.nan), "finite": False}]
    with pytest.raises(NonFiniteLossError, match="step 7: training loss is nan"):
        _report(run, window, step=7, tick=time.perf_counter() - 1.0)


def test_eval_without_checkpoint_is_a_one_line_error(tmp_path, capsys):
    from dust3r_jax.cli import main

    code = main(["eval", "--config", str(TINY_CONFIG), "--workdir", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert code == 2 and "no checkpoint to evaluate" in err and len(err.strip().splitlines()) == 1


def test_bad_mesh_shape_is_a_one_line_error(tmp_path, capsys):
    """A mesh size of 0 (or a non-integer) is refused in one line, before any device work."""
    from dust3r_jax.cli import main

    code = main(["train", "--config", str(TINY_CONFIG), "--workdir", str(tmp_path), "--config.mesh.shape=1,0,1"])
    err = capsys.readouterr().err
    assert code == 2 and "sizes must be integers >= 1" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
