"""inference(): batching by shape bucket, symmetric pairs, official output structure, fixture parity."""
import importlib
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dust3r_jax.inference import inference, plan_batches
from dust3r_jax.pairs import make_pairs
from tests.parity import assert_close


class StandInModel(nn.Module):
    """Same signature as AsymmetricCroCo3DStereo.apply; outputs depend on both views and their order.

    With symmetrized=True it "encodes" only even pairs and swaps them for odd ones, as the real
    model does: a wrongly grouped batch gives wrong numbers.
    """

    @nn.compact
    def __call__(self, view1, view2, symmetrized=False):
        scale = self.param("scale", lambda key: jnp.array(0.5, jnp.float32))
        feat1, feat2 = view1["img"], view2["img"]
        if symmetrized:
            even1, even2 = feat1[::2], feat2[::2]
            feat1 = jnp.stack([even1, even2], axis=1).reshape(feat1.shape)
            feat2 = jnp.stack([even2, even1], axis=1).reshape(feat2.shape)
        mean1 = feat1.mean(axis=(1, 2, 3))[:, None, None, None]
        mean2 = feat2.mean(axis=(1, 2, 3))[:, None, None, None]
        shape_code = view1["true_shape"][:, None, None, :1].astype(jnp.float32)
        pred1 = {"pts3d": feat1 * scale + mean2 + 0 * shape_code, "conf": 1 + jnp.exp(feat1[..., 0] - mean2[..., 0])}
        pred2 = {"pts3d_in_other_view": feat2 - mean1, "conf": 2 + feat2[..., 1] * mean1[..., 0]}
        return pred1, pred2


def _images(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [{"img": rng.uniform(-1, 1, (1, h, w, 3)).astype(np.float32),
             "true_shape": np.array([[h, w]], np.int32), "idx": i, "instance": str(i)}
            for i, (h, w) in enumerate(shapes)]


def _one_by_one(pairs, model, params):
    """Reference: each pair alone, batch of 1, no symmetrisation."""
    outs = []
    for view1, view2 in pairs:
        p1, p2 = model.apply({"params": params}, {k: view1[k] for k in ("img", "true_shape")},
                             {k: view2[k] for k in ("img", "true_shape")})
        outs.append((p1, p2))
    return outs


@pytest.fixture(scope="module")
def stand_in():
    model = StandInModel()
    images = _images([(32, 48)] * 2)
    params = model.init(jax.random.key(0), {k: images[0][k] for k in ("img", "true_shape")},
                        {k: images[1][k] for k in ("img", "true_shape")})["params"]
    return model, params


def test_same_size_pairs_are_stacked_and_equal_pair_by_pair(stand_in):
    model, params = stand_in
    images = _images([(32, 48)] * 4)
    pairs = make_pairs(images, "complete", symmetrize=True)
    output = inference(pairs, model, params, batch_size=4, verbose=False)
    expected = _one_by_one(pairs, model, params)
    assert output["pred1"]["pts3d"].shape == (len(pairs), 32, 48, 3)
    assert output["view1"]["img"].shape == (len(pairs), 32, 48, 3)
    assert output["view2"]["true_shape"].shape == (len(pairs), 2)
    assert output["view1"]["idx"] == [a["idx"] for a, _ in pairs]
    assert output["view2"]["instance"] == [b["instance"] for _, b in pairs]
    for e, (p1, p2) in enumerate(expected):
        assert_close(output["pred1"]["pts3d"][e], p1["pts3d"][0], name=f"pred1 pts3d {e}")
        assert_close(output["pred1"]["conf"][e], p1["conf"][0], name=f"pred1 conf {e}")
        assert_close(output["pred2"]["pts3d_in_other_view"][e], p2["pts3d_in_other_view"][0], name=f"pred2 {e}")
        assert_close(output["pred2"]["conf"][e], p2["conf"][0], name=f"pred2 conf {e}")


def test_mixed_sizes_give_lists_and_equal_pair_by_pair(stand_in):
    model, params = stand_in
    images = _images([(32, 48), (48, 32), (32, 48), (16, 64)], seed=1)
    pairs = make_pairs(images, "complete", symmetrize=True)
    output = inference(pairs, model, params, batch_size=3, verbose=False)
    expected = _one_by_one(pairs, model, params)
    assert isinstance(output["pred1"]["pts3d"], list) and len(output["pred1"]["pts3d"]) == len(pairs)
    for e, ((view1, view2), (p1, p2)) in enumerate(zip(pairs, expected)):
        assert output["view1"]["img"][e].shape == view1["img"].shape[1:]
        np.testing.assert_array_equal(output["view2"]["true_shape"][e], view2["true_shape"][0])
        assert_close(output["pred1"]["pts3d"][e], p1["pts3d"][0], name=f"pred1 {e}")
        assert_close(output["pred2"]["conf"][e], p2["conf"][0], name=f"pred2 conf {e}")


def test_plan_batches_pairs_swapped_copies_and_buckets_shapes():
    images = _images([(32, 48), (32, 48), (32, 48), (48, 32)])
    pairs = make_pairs(images, "complete", symmetrize=True)
    batches = plan_batches(pairs, batch_size=4)
    positions = sorted(p for batch, _ in batches for p in batch)
    assert positions == list(range(len(pairs)))
    for batch, symmetrized in batches:
        shapes = {(pairs[p][0]["img"].shape, pairs[p][1]["img"].shape) for p in batch}
        assert len(shapes) == 1, "a batch mixes shape buckets"
        assert len(batch) <= 4
        if symmetrized:
            for a, b in zip(batch[::2], batch[1::2]):
                assert (pairs[a][0]["idx"], pairs[a][1]["idx"]) == (pairs[b][1]["idx"], pairs[b][0]["idx"])
    # the 6 pairs among the three same-size images form 3 symmetric units
    assert sum(len(b) for b, sym in batches if sym) == 6


def _forward_cases(reference_dir):
    """(name, case) of the load_model forward fixtures; each case gains `checkpoint` and `dpt`."""
    manifest = json.loads((reference_dir / "manifest.json").read_text())
    for name, case in sorted(manifest["forward"].items()):
        if case["mode"] == "load_model":
            model = manifest["models"][case["model"]]
            yield name, dict(case, checkpoint=reference_dir / model["file"],
                             dpt="head_type='dpt'" in model["load_model_string"])


def _pairs_from_fixture(arrays):
    pairs = []
    for e in range(arrays["view1_img"].shape[0]):
        views = []
        for side in ("view1", "view2"):
            views.append({"img": arrays[f"{side}_img"][e:e + 1].transpose(0, 2, 3, 1),
                          "true_shape": arrays[f"{side}_true_shape"][e:e + 1],
                          "idx": int(arrays[f"{side}_idx"][e]), "instance": str(arrays[f"{side}_instance"][e])})
        pairs.append(tuple(views))
    return pairs


def test_inference_equals_official_symmetrized_fixtures(reference_dir):
    """The symmetrized-batch cases of the linear checkpoints (the batching this module adds)."""
    from dust3r_jax import loading
    linear = [c for _, c in _forward_cases(reference_dir) if not c["dpt"]]
    # (a fixture set without symmetrized cases: check its first linear case instead)
    wanted = [c for c in linear if c.get("is_symmetrized")] or linear[:1]
    _check_forward_cases(reference_dir, loading, lambda case: case in wanted, rel=1e-4)


@pytest.mark.slow
def test_inference_equals_all_official_linear_fixtures(reference_dir):
    """Every load_model case of the linear checkpoints (one compile per case: minutes on 2 cores)."""
    from dust3r_jax import loading
    _check_forward_cases(reference_dir, loading, lambda case: not case["dpt"], rel=1e-4)


@pytest.mark.slow
def test_inference_equals_official_dpt_fixtures(reference_dir):
    from dust3r_jax import loading
    # README 9.2: DPT outputs carry ~1e-3 relative float32 noise (expm1 amplifies batch effects)
    _check_forward_cases(reference_dir, loading, lambda case: case["dpt"], rel=1e-3)


def _check_forward_cases(reference_dir, loading, want_case, rel):
    loaded = {}
    checked = 0
    for name, case in _forward_cases(reference_dir):
        if not want_case(case):
            continue
        if case["model"] not in loaded:
            loaded[case["model"]] = loading.load_model(case["checkpoint"])
        model, params = loaded[case["model"]]
        arrays = np.load(reference_dir / case["file"])
        pairs = _pairs_from_fixture(arrays)
        output = inference(pairs, model, params, batch_size=case["batch"], verbose=False)
        for pred, key in (("pred1", "pts3d"), ("pred1", "conf"), ("pred2", "pts3d_in_other_view"), ("pred2", "conf")):
            got = output[pred][key]
            got = np.stack(got) if isinstance(got, list) else got
            assert_close(got, arrays[f"{pred}_{key}"], rel=rel, name=f"{name} {pred}.{key}")
        checked += 1
    assert checked, "no forward case found"


@pytest.fixture(scope="module")
def tiny_real_model():
    from dust3r_jax.loading import init_params
    from dust3r_jax.model import AsymmetricCroCo3DStereo
    from dust3r_jax.model_config import model_config

    model = AsymmetricCroCo3DStereo(model_config(enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32,
                                                 dec_depth=2, dec_num_heads=2, head_type="linear"))
    return model, init_params(model, jax.random.key(0))


def test_shared_encodings_equal_whole_pair_runs(tiny_real_model):
    """Each image encoded once for all its pairs gives what whole-pair runs give, mixed sizes included."""
    from dust3r_jax.inference import encode_images

    model, params = tiny_real_model
    images = _images([(32, 48)] * 3 + [(48, 32)], seed=2)
    pairs = make_pairs(images, "complete", symmetrize=True)
    assert len(encode_images(pairs, model, params)) == len(images)  # not one per pair
    shared = inference(pairs, model, params, batch_size=4, verbose=False)
    whole = inference(pairs, model, params, batch_size=4, verbose=False, reuse_encodings=False)
    expected = _one_by_one(pairs, model, params)
    for e, (p1, p2) in enumerate(expected):
        for out in (shared, whole):
            assert_close(out["pred1"]["pts3d"][e], p1["pts3d"][0], name=f"pred1 pts3d {e}")
            assert_close(out["pred1"]["conf"][e], p1["conf"][0], name=f"pred1 conf {e}")
            assert_close(out["pred2"]["pts3d_in_other_view"][e], p2["pts3d_in_other_view"][0], name=f"pred2 {e}")


def test_shared_encodings_tell_images_apart_by_array_not_label(tiny_real_model):
    """Two different images that carry the same instance label are not mixed up."""
    model, params = tiny_real_model
    a, b, c = _images([(32, 48)] * 3, seed=3)
    c = dict(c, idx=1, instance="1")  # c is labelled like b
    pairs = [(a, b), (a, c)]
    output = inference(pairs, model, params, batch_size=2, verbose=False)
    expected = _one_by_one(pairs, model, params)
    for e, (p1, p2) in enumerate(expected):
        assert_close(output["pred2"]["pts3d_in_other_view"][e], p2["pts3d_in_other_view"][0], name=f"pair {e}")
    assert not np.allclose(output["pred2"]["pts3d_in_other_view"][0], output["pred2"]["pts3d_in_other_view"][1])


def test_cpu_compiler_options_change_speed_not_results(tiny_real_model):
    """From 512 tokens per image (512x384, not 224) the CPU forward compiles with YNNPACK fusions
    off (faster there); results must equal the default compilation, on both inference paths."""
    # the module (`dust3r_jax.inference` is the public function)
    inference_module = importlib.import_module("dust3r_jax.inference")
    from dust3r_jax import xla_cpu

    model, params = tiny_real_model
    assert inference_module.forward_compiler_options(model, (224, 224)) == {}
    assert inference_module.forward_compiler_options(model, (384, 512), backend="gpu") == {}
    if jax.default_backend() == "cpu":
        assert xla_cpu.supported(), "jaxlib no longer knows the option: update or drop it"
        assert inference_module.forward_compiler_options(model, (384, 512)) == dict(xla_cpu.policy().options)
    images = _images([(32, 48)] * 3, seed=4)
    pairs = make_pairs(images, "complete", symmetrize=True)
    expected = {reuse: inference(pairs, model, params, batch_size=4, verbose=False, reuse_encodings=reuse)
                for reuse in (True, False)}
    with xla_cpu.using(xla_cpu.CpuPolicy(forward_min_tokens=0)):  # these tiny images take the tuned path
        if jax.default_backend() == "cpu":
            assert inference_module.forward_compiler_options(model, (32, 48)) == dict(xla_cpu.policy().options)
        for reuse in (True, False):
            got = inference(pairs, model, params, batch_size=4, verbose=False, reuse_encodings=reuse)
            # different dot kernels sum in another order: float32 rounding, ~1e-6 of the largest value
            for key in ("pts3d", "conf"):
                assert_close(got["pred1"][key], expected[reuse]["pred1"][key], rel=1e-5, name=f"pred1 {key}")
            assert_close(got["pred2"]["pts3d_in_other_view"], expected[reuse]["pred2"]["pts3d_in_other_view"],
                         rel=1e-5, name="pred2 pts3d")


def test_public_inference_is_the_function_whatever_was_imported_first():
    """`from dust3r_jax import inference` (the official API) is the function even after code
    imported the submodule of the same name."""
    import dust3r_jax
    from dust3r_jax import inference as public

    importlib.import_module("dust3r_jax.inference")
    assert callable(public) and public is dust3r_jax.inference and public.__name__ == "inference"
