"""The Flax model reproduces the official forward outputs and intermediates (fp32, rel 1e-4).

Cases are discovered from manifest.json, so a second fixture set with other models and shapes
runs through the same tests.
"""
import numpy as np
import pytest

from conftest import REFERENCE
from model_fixtures import forward_cases, load_fixture_model, nchw, run_model, views_from_npz
from parity import assert_close

CASES = forward_cases(REFERENCE) if (REFERENCE / "manifest.json").is_file() else []
# fixture names whose sown name differs (a sown name cannot equal a submodule's name)
SOWN_NAMES = {"enc_norm": "enc_norm.out", "decoder_embed": "decoder_embed.out"}


def _ours(name, pred1, pred2, sown):
    """Our value for fixture array `name` (int__<name>__c<k> or pred*)."""
    if name.startswith("pred1_"):
        return pred1[name[len("pred1_"):]]
    if name.startswith("pred2_"):
        return pred2[name[len("pred2_"):]]
    body, call = name[len("int__"):].rsplit("__c", 1)
    call = int(call)
    reduction = None
    for suffix in (".ch_subset", ".ch_mean", ".ch_l2", ".shape"):
        if body.endswith(suffix):
            body, reduction = body[: -len(suffix)], suffix
    if body.startswith("head") and ".dpt." in body:  # head1.dpt.scratch.refinenet4
        head, rest = body.split(".dpt.")
        node = sown[f"downstream_head{head[len('head'):]}"]["dpt"]
        if rest.startswith("scratch."):
            node, rest = node["scratch"], rest[len("scratch."):]
        value = np.asarray((node[rest] if rest in node else node[f"{rest}.out"])[call])
    else:
        value = np.asarray(sown[SOWN_NAMES.get(body, body)][call])
    if body.endswith(".raw") or ".dpt." in body:
        value = nchw(value)
    if reduction == ".ch_subset":
        value = value[:, :8]
    elif reduction == ".ch_mean":
        value = value.mean(axis=(2, 3))
    elif reduction == ".ch_l2":
        value = np.sqrt((value.astype(np.float64) ** 2).sum(axis=(2, 3)))
    elif reduction == ".shape":
        value = np.array(value.shape)
    return value


@pytest.mark.parametrize("case_name,case", CASES, ids=[c[0] for c in CASES])
def test_forward_matches_official(reference_dir, case_name, case):
    data = np.load(reference_dir / case["file"])
    tag = case["model"]
    model, params = load_fixture_model(str(reference_dir / "models" / f"{tag}.pth"), case["mode"] == "raw_args")
    view1, view2 = views_from_npz(data)
    (pred1, pred2), sown = run_model(
        model, params, view1, view2, symmetrized=bool(case["is_symmetrized"]), intermediates=True
    )
    sown = sown["intermediates"]
    for name in data.files:
        if not (name.startswith("pred") or name.startswith("int__")):
            continue
        expected = data[name]
        ours = _ours(name, pred1, pred2, sown)
        if expected.dtype.kind in "iu":
            np.testing.assert_array_equal(np.asarray(ours), expected, err_msg=name)
        else:
            assert_close(ours, expected, name=f"{case_name}:{name}")
