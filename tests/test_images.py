"""load_images: parity with the official loader fixtures, and one clear error per kind of bad input."""
import json

import numpy as np
import PIL.Image
import pytest

from dust3r_jax.errors import ImageError, InputError
from dust3r_jax.images import load_images, processed_to_original


def _loader_runs(reference_dir):
    manifest = json.loads((reference_dir / "manifest.json").read_text())
    return manifest["loader"]["runs"]


def test_load_images_equals_official_tensors(reference_dir):
    """Every loader run of the manifest: same pixels (bitwise, same Pillow), shapes, idx, instance."""
    runs = _loader_runs(reference_dir)
    assert runs, "manifest lists no loader runs"
    for name, run in runs.items():
        expected = np.load(reference_dir / run["file"])
        paths = [reference_dir / "loader" / "images" / entry["file"] for entry in run["images"]]
        images = load_images(paths, **run["kwargs"])
        assert len(images) == len(run["images"]), name
        for k, (image, entry) in enumerate(zip(images, run["images"])):
            expected_img = expected[f"img_{k}"].transpose(0, 2, 3, 1)  # NCHW -> NHWC
            assert image["img"].dtype == np.float32
            assert image["img"].shape == expected_img.shape, f"{name} {entry['file']}"
            np.testing.assert_array_equal(image["img"], expected_img, err_msg=f"{name} {entry['file']}")
            np.testing.assert_array_equal(image["true_shape"], expected[f"true_shape_{k}"])
            assert image["true_shape"].dtype == np.int32
            assert (image["idx"], image["instance"]) == (entry["idx"], entry["instance"])


def test_folder_is_sorted_and_skips_other_files(tmp_path, reference_dir):
    source = reference_dir / "loader" / "images"
    names = sorted(p.name for p in source.glob("*.png"))[:2]
    for name in reversed(names):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_images(tmp_path, size=224)
    assert [img["source"]["path"] for img in images] == [str(tmp_path / n) for n in names]


def _save(path, array, **kwargs):
    PIL.Image.fromarray(array).save(path, **kwargs)
    return path


def test_greyscale_rgba_and_16bit_png_load_as_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey = _save(tmp_path / "grey.png", rng.integers(0, 256, (60, 80), dtype=np.uint8))
    rgba = _save(tmp_path / "rgba.png", rng.integers(0, 256, (60, 80, 4), dtype=np.uint8))
    deep = rng.integers(0, 65536, (60, 80)).astype(np.uint16)
    deep16 = _save(tmp_path / "deep16.png", deep)
    images = load_images([grey, rgba, deep16], size=224)
    for image in images:
        assert image["img"].shape == (1, 224, 224, 3)
        assert -1.0 <= image["img"].min() and image["img"].max() <= 1.0
    # greyscale -> equal channels; 16-bit scaled (not clipped to white as Pillow's convert would)
    np.testing.assert_array_equal(images[0]["img"][..., 0], images[0]["img"][..., 2])
    assert images[2]["img"].mean() < 0.5


def test_processed_to_original_maps_the_centre_and_scale(tmp_path):
    """A square 500x500 image at 512 is resized by 1.024 and cropped to 512x384 (64 rows off)."""
    path = _save(tmp_path / "sq.png", np.zeros((500, 500, 3), dtype=np.uint8))
    (image,) = load_images([path], size=512)
    height, width = image["true_shape"][0]
    to_original = processed_to_original(image["source"])
    centre = to_original @ np.array([(width - 1) / 2, (height - 1) / 2, 1.0])
    np.testing.assert_allclose(centre[:2], [249.5, 249.5], atol=1e-9)
    np.testing.assert_allclose(np.diag(to_original)[:2], [500 / 512, 500 / 512])


@pytest.mark.parametrize("case", ["empty_folder", "not_an_image", "truncated_jpeg", "one_pixel", "too_thin",
                                  "missing_file", "text_extension"])
def test_bad_input_is_a_one_line_image_error(tmp_path, case):
    rng = np.random.default_rng(1)
    if case == "empty_folder":
        target = tmp_path
    elif case == "not_an_image":
        target = [tmp_path / "fake.jpg"]
        target[0].write_text("hello, I am text")
    elif case == "truncated_jpeg":
        full = _save(tmp_path / "full.jpg", rng.integers(0, 256, (200, 300, 3), dtype=np.uint8), quality=95)
        data = full.read_bytes()
        (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
        target = [tmp_path / "cut.jpg"]
    elif case == "one_pixel":
        target = [_save(tmp_path / "dot.png", np.zeros((1, 1, 3), dtype=np.uint8))]
    elif case == "too_thin":
        target = [_save(tmp_path / "thin.png", np.zeros((20, 2000, 3), dtype=np.uint8))]
    elif case == "missing_file":
        target = [tmp_path / "nope.png"]
    else:
        (tmp_path / "a.txt").write_text("x")
        target = [tmp_path / "a.txt"]
    with pytest.raises(ImageError) as info:
        load_images(target, size=512)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) in message


def test_wrong_size_is_an_input_error(reference_dir):
    path = sorted((reference_dir / "loader" / "images").glob("*.png"))[0]
    with pytest.raises(InputError, match="image size 8"):
        load_images([path], size=8)
