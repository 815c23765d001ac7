"""The per-view geometry of `dust3r_jax.data.views` and the checks of the base class.

Each test pins one trap of the official pipeline (README sections 1.3-1.6 and 4); the end-to-end
equality with the official outputs is in test_data_sources_*.py.
"""
import numpy as np
import PIL.Image
import pytest

from dust3r_jax.data import views
from dust3r_jax.data.base import ViewDataset, parse_resolutions
from dust3r_jax.errors import ConfigError, InputError


def _intrinsics(fx, fy, cx, cy):
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float32)


@pytest.mark.parametrize("shape,out", [((7, 11), (23, 5)), ((48, 64), (97, 131)), ((120, 160), (36, 64)),
                                       ((13, 17), (13, 17))])
def test_depth_resize_is_opencv_floor_nearest(shape, out):
    cv2 = pytest.importorskip("cv2")
    depth = np.random.default_rng(0).random(shape, dtype=np.float32)
    ours = views.resize_depth_nearest(depth, out[1], out[0])
    theirs = cv2.resize(depth, (out[1], out[0]), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(ours, theirs)


def test_depth_resize_is_not_pixel_centre_nearest():
    # 4 -> 3 columns: OpenCV takes floor(i * 4/3) = 0, 1, 2; pixel-centre nearest takes 0, 2, 3
    depth = np.arange(4, dtype=np.float32)[None, :]
    np.testing.assert_array_equal(views.resize_depth_nearest(depth, 3, 1)[0], [0, 1, 2])


def test_principal_point_crop_rounds_half_to_even():
    assert views.principal_point_box(_intrinsics(50, 50, 78.5, 59.5), (158, 118)) == (0, 2, 156, 118)  # 78, 60
    assert views.principal_point_box(_intrinsics(50, 50, 79.5, 60.5), (160, 120)) == (0, 0, 160, 120)


def test_intrinsics_follow_the_resize_and_centre_crop():
    k = _intrinsics(100, 100, 63.5, 47.5)  # centred on a 128x96 image
    image = PIL.Image.new("RGB", (128, 96))
    depth = np.ones((96, 128), np.float32)
    out_image, out_depth, out_k = views.crop_resize_view(image, depth, k, (64, 48), np.random.default_rng(0))
    assert out_image.size == (64, 48) and out_depth.shape == (48, 64)
    # halving the image halves the focal length and keeps the principal point centred
    np.testing.assert_allclose(out_k, _intrinsics(50, 50, 31.5, 23.5), atol=1e-5)


def test_centre_crop_offset_uses_float32_steps():
    # W' - w odd: the offset is round_half_even of a float32 difference near x.5, never a float64 one
    rng = np.random.default_rng(1)
    for _ in range(200):
        k = _intrinsics(1, 1, *rng.uniform(10, 200, 2).astype(np.float32))
        width, crop = int(rng.integers(50, 300)), int(rng.integers(10, 49))
        box = views.centre_crop_box(k, (width, width), (crop, crop))
        k_crop = k.copy()
        k_crop[:2, 2] += np.float32(0.5)
        k_crop[:2, 2] = (k_crop[:2, 2].astype(np.float64) - 0.5 * (width - crop)).astype(np.float32)
        k_crop[:2, 2] -= np.float32(0.5)
        assert box[0] == int(np.round(k[0, 2] - k_crop[0, 2]))
        assert box[2] - box[0] == crop


def test_orientation_and_aug_crop_draws():
    image = PIL.Image.new("RGB", (100, 100))
    depth = np.ones((100, 100), np.float32)
    k = _intrinsics(80, 80, 50, 50)
    seen = set()
    for seed in range(12):  # nearly square crop + non-square target: orientation at random
        out, _, _ = views.crop_resize_view(image, depth, k, (64, 48), np.random.default_rng(seed))
        seen.add(out.size)
    assert seen == {(64, 48), (48, 64)}
    # square target: no draw at all; aug_crop draws exactly one integer (the generator moves once)
    rng = np.random.default_rng(5)
    views.crop_resize_view(image, depth, k, (64, 64), rng, aug_crop=16)
    reference = np.random.default_rng(5)
    reference.integers(0, 16)
    assert rng.bytes(4) == reference.bytes(4)


def test_portrait_is_transposed_with_rows_swapped():
    view = dict(true_shape=np.int32((6, 4)), img=np.zeros((6, 4, 3), np.float32), depthmap=np.zeros((6, 4)),
                valid_mask=np.zeros((6, 4), bool), pts3d=np.arange(72, dtype=np.float32).reshape(6, 4, 3),
                camera_intrinsics=_intrinsics(1, 2, 3, 4))
    pts = view["pts3d"].copy()
    views.transpose_to_landscape(view)
    assert view["img"].shape == (4, 6, 3) and view["depthmap"].shape == (4, 6)
    np.testing.assert_array_equal(view["pts3d"], pts.swapaxes(0, 1))
    np.testing.assert_array_equal(view["camera_intrinsics"], [[0, 2, 4], [1, 0, 3], [0, 0, 1]])
    assert tuple(view["true_shape"]) == (6, 4)


def test_world_points_and_valid_mask():
    depth = np.array([[0.0, 2.0], [1.0, 4.0]], np.float32)
    k = _intrinsics(2, 4, 0.5, 0.5)
    pose = np.eye(4, dtype=np.float32)
    pose[:3, 3] = (1, 2, 3)
    pts, valid = views.depth_to_world_points(depth, k, pose)
    assert pts.dtype == np.float32
    np.testing.assert_allclose(pts[0, 1], [(1 - 0.5) * 2 / 2 + 1, (0 - 0.5) * 2 / 4 + 2, 2 + 3])
    np.testing.assert_array_equal(pts[0, 0], [1, 2, 3])  # invalid pixel: the camera centre
    np.testing.assert_array_equal(valid, [[False, True], [True, True]])


def test_img_norm_is_float32_in_minus_one_one():
    pixels = np.array([[[0, 128, 255]]], np.uint8)
    out = views.img_norm(PIL.Image.fromarray(pixels))
    expected = (pixels.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    assert out.dtype == np.float32 and out.shape == (1, 1, 3)
    np.testing.assert_array_equal(out, expected)


def test_color_jitter_without_jitter_is_img_norm_and_jitters_otherwise():
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8))
    still = views.ColorJitter(0, 0, 0, 0, seed=0)
    np.testing.assert_array_equal(still(image), views.img_norm(image))
    a, b = views.ColorJitter(seed=3), views.ColorJitter(seed=3)
    out_a = a(image)
    np.testing.assert_array_equal(out_a, b(image))  # seeded: reproducible
    assert out_a.shape == (8, 9, 3) and np.abs(out_a).max() <= 1 and not np.array_equal(out_a, views.img_norm(image))


@pytest.mark.parametrize("bad", [(48, 64), (64.0, 48), [], "224", None])
def test_bad_resolutions_are_config_errors(bad):
    with pytest.raises(ConfigError, match="resolution"):
        parse_resolutions(bad)


def test_resolution_forms():
    assert parse_resolutions(224) == [(224, 224)]
    assert parse_resolutions((512, 384)) == [(512, 384)]
    assert parse_resolutions([(512, 384), 64]) == [(512, 384), (64, 64)]


class _Synthetic(ViewDataset):
    """Two views of a flat scene; `nan_at` puts a NaN in the depth."""

    dataset_name = "synthetic"

    def __init__(self, nan_at=None, **kwargs):
        super().__init__(ROOT=".", **kwargs)
        self.nan_at = nan_at

    def __len__(self):
        return 10

    def _get_views(self, idx, resolution, rng):
        out = []
        for v in range(2):
            depth = np.full((40, 50), 2.0, np.float32)
            if self.nan_at is not None:
                depth[self.nan_at] = np.nan
            image = PIL.Image.new("RGB", (50, 40), (v * 50, 0, 0))
            image, depth, k = self._crop_resize_if_necessary(image, depth, _intrinsics(30, 30, 25, 20), resolution, rng)
            out.append(dict(img=image, depthmap=depth, camera_pose=np.eye(4, dtype=np.float32),
                            camera_intrinsics=k, dataset="synthetic", label="flat", instance=str(v)))
        return out


def test_base_seeding_rules():
    seeded = _Synthetic(resolution=[(32, 24), (32, 16)], seed=777, aug_crop=8)
    assert seeded[(3, 1)][0]["rng"] == seeded[(3, 1)][0]["rng"]  # a function of the index
    assert seeded[(3, 1)][0]["idx"] == (3, 1, 0)
    first = _Synthetic(resolution=24, aug_crop=8)
    first.set_stream_seed(1234)
    stream = [first[i][1]["rng"] for i in (2, 2, 2)]
    assert len(set(stream)) == 3  # unseeded: one continuing stream
    again = _Synthetic(resolution=24, aug_crop=8)
    again.set_stream_seed(1234)
    assert [again[i][1]["rng"] for i in (2, 2, 2)] == stream
    indexed = _Synthetic(resolution=24, aug_crop=8)
    indexed.set_index_seed(9)
    assert indexed[4][0]["rng"] == indexed[4][0]["rng"] != indexed[5][0]["rng"]


def test_int_index_needs_a_single_resolution():
    with pytest.raises(InputError, match="aspect-ratio"):
        _Synthetic(resolution=[(32, 24), (32, 16)])[0]


def test_nan_depth_is_an_input_error():
    with pytest.raises(InputError, match="synthetic flat/0: depth map has NaN"):
        _Synthetic(nan_at=(20, 25), resolution=24)[0]


def test_color_jitter_of_seeded_views_is_reproducible():
    first = _Synthetic(resolution=24, seed=777, transform="ColorJitter")[3]
    again = _Synthetic(resolution=24, seed=777, transform="ColorJitter")[3]
    plain = _Synthetic(resolution=24, seed=777)[3]
    np.testing.assert_array_equal(first[1]["img"], again[1]["img"])
    assert not np.array_equal(first[1]["img"], plain[1]["img"])  # view 1 is not black
    assert first[0]["rng"] == plain[0]["rng"]  # jitter does not consume the view generator


def test_principal_point_outside_the_image_is_an_input_error():
    image = PIL.Image.new("RGB", (40, 30))
    with pytest.raises(InputError, match="frame.jpg: principal point"):
        views.crop_resize_view(image, np.ones((30, 40), np.float32), _intrinsics(30, 30, 45, 15), (32, 24),
                               np.random.default_rng(0), info="frame.jpg")
