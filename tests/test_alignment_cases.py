"""Fixture cases of the official global aligner, discovered from manifest.json, and input reading.

Other test_alignment_* files import `ga_cases`, `load_case` from here.
"""
import json

import numpy as np
import pytest

from dust3r_jax.alignment import read_pairs
from dust3r_jax.errors import InputError


def ga_cases(reference_dir, mode="PointCloudOptimizer"):
    manifest = json.loads((reference_dir / "manifest.json").read_text())
    return sorted(name for name, spec in manifest.get("ga", {}).items()
                  if spec.get("global_aligner_kwargs", {}).get("mode") == mode)


def load_case(reference_dir, name):
    """(npz data, inference-style output dict NHWC, manifest spec) of one GA fixture."""
    manifest = json.loads((reference_dir / "manifest.json").read_text())
    spec = manifest["ga"][name]
    data = np.load(reference_dir / spec["file"])
    edges = data["edges"]
    stacked = "pred1_pts3d" in data.files

    def get(key):
        if stacked:
            return data[key]
        return [data[f"{key}__e{e:02d}"] for e in range(len(edges))]

    def imgs(key):  # fixtures store NCHW; inference() returns NHWC
        value = get(key)
        return np.moveaxis(value, 1, -1) if stacked else [np.moveaxis(v, 0, -1) for v in value]

    output = {
        "view1": {"img": imgs("view1_img"), "true_shape": get("view1_true_shape"), "idx": edges[:, 0],
                  "instance": data["view1_instance"]},
        "view2": {"img": imgs("view2_img"), "true_shape": get("view2_true_shape"), "idx": edges[:, 1],
                  "instance": data["view2_instance"]},
        "pred1": {"pts3d": get("pred1_pts3d"), "conf": get("pred1_conf")},
        "pred2": {"pts3d_in_other_view": get("pred2_pts3d_in_other_view"), "conf": get("pred2_conf")},
    }
    return data, output, spec


def per_view(data, prefix):
    n = 0
    out = []
    while f"{prefix}__v{n}" in data.files:
        out.append(data[f"{prefix}__v{n}"])
        n += 1
    return out


def test_cases_are_discovered(reference_dir):
    assert ga_cases(reference_dir), "no PointCloudOptimizer case in manifest.json"


def test_read_pairs_image_confidence_is_max_over_pairs(reference_dir):
    for name in ga_cases(reference_dir):
        data, output, spec = load_case(reference_dir, name)
        pairs = read_pairs(output)
        assert pairs.n_imgs == spec["n_views"]
        assert [list(s) for s in pairs.imshapes] == spec["shapes_HxW"]
        for n, expected in enumerate(per_view(data, "init__im_conf")):
            np.testing.assert_array_equal(pairs.im_conf[n], expected)
        # images come back NHWC in [0, 1]
        assert pairs.imgs[0].shape == tuple(spec["shapes_HxW"][0]) + (3,)
        assert 0 <= pairs.imgs[0].min() and pairs.imgs[0].max() <= 1


def test_read_pairs_accepts_leading_batch_axis_per_pair(reference_dir):
    name = ga_cases(reference_dir)[0]
    _, output, _ = load_case(reference_dir, name)
    listed = {k: {kk: (list(vv[:, None]) if isinstance(vv, np.ndarray) and vv.ndim >= 3 else
                       [x[None] for x in vv] if isinstance(vv, list) else vv)
                  for kk, vv in v.items()} for k, v in output.items()}
    a, b = read_pairs(output), read_pairs(listed)
    for e in range(a.n_edges):
        np.testing.assert_array_equal(a.pred_i[e], b.pred_i[e])
        np.testing.assert_array_equal(a.conf_j[e], b.conf_j[e])


def test_bad_image_indices_raise_input_error(reference_dir):
    _, output, _ = load_case(reference_dir, ga_cases(reference_dir)[0])
    output["view1"] = dict(output["view1"], idx=np.asarray(output["view1"]["idx"]) + 10)
    output["view2"] = dict(output["view2"], idx=np.asarray(output["view2"]["idx"]) + 10)
    with pytest.raises(InputError, match="0..N-1"):
        read_pairs(output)
