"""make_pairs: the official pair lists element for element, and clear errors for bad graph names."""
import json

import pytest

from dust3r_jax.errors import InputError
from dust3r_jax.pairs import make_pairs


def _cases(reference_dir):
    """(scene_graph, kwargs, expected [[idx1, idx2], ...]) from the keys of make_pairs.json."""
    fixture = json.loads((reference_dir / "utils" / "make_pairs.json").read_text())
    for key, expected in fixture["results"].items():
        scene_graph, *options = key.split("|")
        kwargs = {}
        for option in options:
            name, value = option.split("=")
            kwargs[name] = {"True": True, "False": False, "None": None}.get(value, value)
        yield fixture["n_imgs"], scene_graph, kwargs, expected


def test_make_pairs_equals_official_lists(reference_dir):
    cases = list(_cases(reference_dir))
    assert cases
    for n_imgs, scene_graph, kwargs, expected in cases:
        images = [{"idx": i, "instance": str(i)} for i in range(n_imgs)]
        pairs = make_pairs(images, scene_graph, **kwargs)
        assert [[a["idx"], b["idx"]] for a, b in pairs] == expected, (scene_graph, kwargs)


def test_pairs_hold_the_image_dicts_themselves():
    images = [{"idx": i, "instance": str(i)} for i in range(3)]
    first, second = make_pairs(images, "oneref-1", symmetrize=False)[0]
    assert first is images[1] and second is images[0]


@pytest.mark.parametrize("scene_graph", ["complet", "swin-x", "oneref-9", "complete-2", "logwin-0"])
def test_bad_scene_graph_is_an_input_error(scene_graph):
    images = [{"idx": i, "instance": str(i)} for i in range(3)]
    with pytest.raises(InputError, match="scene graph"):
        make_pairs(images, scene_graph)


def test_bad_prefilter_and_too_few_images_are_input_errors():
    images = [{"idx": i, "instance": str(i)} for i in range(3)]
    with pytest.raises(InputError, match="prefilter"):
        make_pairs(images, prefilter="window3")
    with pytest.raises(InputError, match="at least 2 images"):
        make_pairs(images[:1])
