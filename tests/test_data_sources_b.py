"""BlendedMVS, MegaDepth, StaticThings3D, Waymo and Habitat against the official loader's outputs.

For every manifest of these datasets in `datasets/expected/`, the dataset is built from its
constructor string and called with the manifest's indices in order on one object; every field of
every view must equal the official one exactly (max diff 0), reading the fake folder and reading
a TFDS array_record build of it. Bad inputs raise one-line InputErrors naming the file.
"""
import json
import shutil
import sys

import numpy as np
import pytest

from data_fixtures import folder_mismatches, dataset_manifests, manifest_cases, run_manifest_config
from dust3r_jax.data.mixture import parse_dataset
from dust3r_jax.errors import ConfigError, InputError

OWN_DATASETS = ("BlendedMVS", "MegaDepth", "StaticThings3D", "Waymo", "Habitat")


def _cases(reference_dir):
    return manifest_cases(reference_dir, OWN_DATASETS)


def test_fixtures_discovered(reference_dir):
    names = {name for name, *_ in _cases(reference_dir)}
    assert names, f"no expected/<Name>.json for any of {OWN_DATASETS}"


def test_views_from_folder_equal_official(reference_dir):
    bad = folder_mismatches(reference_dir, _cases(reference_dir))
    assert not bad, "\n".join(bad)


@pytest.fixture(scope="module")
def tfds_builds(reference_dir, tmp_path_factory):
    """Every own dataset with a fake copy, packed (default splits) into array_record once.

    Built from a copy of the fake folder that is deleted afterwards: reading needs only the build.
    """
    from dust3r_jax.data.tfds_builder import RecordStore, build_source_dataset

    data_dir = tmp_path_factory.mktemp("tfds_b")
    stores = {}
    for name, manifest, _ in dataset_manifests(reference_dir, OWN_DATASETS):
        copy = tmp_path_factory.mktemp("folder") / name
        shutil.copytree(reference_dir / "datasets" / manifest["fake_root"], copy)
        build_source_dataset(name, copy, data_dir)
        shutil.rmtree(copy)
        stores[name] = RecordStore(name, data_dir)
    return stores


def test_views_from_tfds_build_equal_official(reference_dir, tfds_builds):
    bad = []
    for name, manifest, npz, config in _cases(reference_dir):
        constructor = config["constructor"].replace("ROOT='{ROOT}', ", "").replace(", ROOT='{ROOT}'", "")
        assert "{ROOT}" not in constructor, constructor
        dataset = parse_dataset(constructor, stores={name: tfds_builds[name]})
        assert dataset.store is tfds_builds[name]
        with np.load(npz) as expected:
            bad += [f"{name} {m}" for m in run_manifest_config(dataset, config, expected)]
    assert not bad, "\n".join(bad)
    assert "tensorflow" not in sys.modules, "reading a TFDS build imported TensorFlow"


# -- documented deviations and options -------------------------------------------------------------


def _fake_root(reference_dir, name):
    matches = dataset_manifests(reference_dir, (name,))
    if not matches:
        pytest.skip(f"no fake {name} in the reference")
    return reference_dir / "datasets" / matches[0][1]["fake_root"]


def test_megadepth_split_is_ignored_unless_asked(reference_dir):
    """Official bug kept by default (both splits = all pairs); apply_split=True holds out 0015/0022."""
    from dust3r_jax.data.sources.megadepth import VAL_SCENES, MegaDepth

    root = str(_fake_root(reference_dir, "MegaDepth"))
    everything = MegaDepth(split="train", ROOT=root, resolution=64)
    assert len(MegaDepth(split="val", ROOT=root, resolution=64)) == len(everything)

    def is_val(dataset):
        return [str(dataset.scenes[row[0]]).startswith(VAL_SCENES) for row in dataset.pairs]

    train = MegaDepth(split="train", ROOT=root, resolution=64, apply_split=True)
    if not any(is_val(everything)) or all(is_val(everything)):
        pytest.skip("the fake MegaDepth needs pairs in and out of the validation scenes")
    val = MegaDepth(split="val", ROOT=root, resolution=64, apply_split=True)
    assert not any(is_val(train)) and all(is_val(val))
    assert len(train) + len(val) == len(everything)


# -- bad input -------------------------------------------------------------------------------------


def _fake_copy(reference_dir, tmp_path, name):
    root = tmp_path / name
    shutil.copytree(_fake_root(reference_dir, name), root)
    return root


def _write_exr(path, depth):
    import OpenEXR

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"Y": np.asarray(depth, np.float32)}) as exr:
        exr.write(str(path))


def test_missing_depth_file_names_the_file(reference_dir, tmp_path):
    from dust3r_jax.data.sources.blendedmvs import BlendedMVS

    root = _fake_copy(reference_dir, tmp_path, "BlendedMVS")
    dataset = BlendedMVS(split=None, ROOT=str(root), resolution=64, seed=777)
    view = dataset[0][0]
    victim = root / view["label"] / f"{view['instance']}.exr"
    victim.unlink()
    with pytest.raises(InputError, match=victim.name) as err:
        dataset[0]
    assert "\n" not in str(err.value)


def test_corrupt_depth_file_names_the_file(reference_dir, tmp_path):
    from dust3r_jax.data.sources.megadepth import MegaDepth

    root = _fake_copy(reference_dir, tmp_path, "MegaDepth")
    dataset = MegaDepth(split="train", ROOT=str(root), resolution=64, seed=777)
    view = dataset[0][1]
    victim = root / view["label"] / f"{view['instance']}.exr"
    victim.write_bytes(victim.read_bytes()[:64])  # truncated EXR
    with pytest.raises(InputError, match=victim.name) as err:
        dataset[0]
    assert "\n" not in str(err.value)


def test_nan_depth_names_the_depth_file(reference_dir, tmp_path):
    """A NaN inside the crop is refused with the file's name, never passed on as a NaN loss."""
    from dust3r_jax.data.sources.waymo import Waymo

    root = _fake_copy(reference_dir, tmp_path, "Waymo")
    dataset = Waymo(ROOT=str(root), resolution=64, seed=777)
    view = dataset[0][0]
    victim = root / view["label"] / f"{view['instance']}.exr"
    from dust3r_jax.data.files import FolderStore, read_exr_depth

    depth = read_exr_depth(FolderStore(root), victim.relative_to(root).as_posix())
    _write_exr(victim, np.full_like(depth, np.nan))  # NaN everywhere: inside any crop
    with pytest.raises(InputError, match=victim.name) as err:
        dataset[0]
    assert "NaN" in str(err.value) and "\n" not in str(err.value)


def test_missing_camera_entry_names_the_file(reference_dir, tmp_path):
    from dust3r_jax.data.sources.staticthings3d import StaticThings3D

    root = _fake_copy(reference_dir, tmp_path, "StaticThings3D")
    dataset = StaticThings3D(str(root), mask_bg=True, resolution=64, seed=777)
    view = dataset[0][0]
    camera, frame = view["instance"].split("_")[:2]
    victim = root / view["label"] / camera / f"{frame}.npz"
    np.savez(victim, intrinsics=np.load(victim)["intrinsics"])  # cam2world gone
    with pytest.raises(InputError, match=f"{victim.name}.*cam2world"):
        dataset[0]


def test_habitat_with_no_finite_pose_is_an_input_error(reference_dir, tmp_path):
    from dust3r_jax.data.files import FolderStore, read_text_lines
    from dust3r_jax.data.sources.habitat import Habitat, view_paths

    root = _fake_copy(reference_dir, tmp_path, "Habitat")
    scene_list = sorted(root.glob("Habitat_*_scenes_*.txt"))[0].name
    size, split = scene_list[len("Habitat_"):-len(".txt")].split("_scenes_")
    dataset = Habitat(int(size), split=split, ROOT=str(root), resolution=64, seed=777)
    scene = read_text_lines(FolderStore(root), scene_list)[0]
    for file_index in range(1, 6):
        camera_file = root / view_paths(scene, file_index)[2]
        camera = json.loads(camera_file.read_text())
        camera["t_cam2world"][0] = float("nan")
        camera_file.write_text(json.dumps(camera))
    with pytest.raises(InputError, match="camera poses of all 5 views") as err:
        dataset[0]
    assert scene in str(err.value)


def test_missing_index_file_and_bad_split(reference_dir, tmp_path):
    from dust3r_jax.data.sources.blendedmvs import BlendedMVS
    from dust3r_jax.data.sources.habitat import Habitat
    from dust3r_jax.data.sources.waymo import Waymo

    root = _fake_copy(reference_dir, tmp_path, "BlendedMVS")
    with pytest.raises(ConfigError, match="split"):
        BlendedMVS(split="test", ROOT=str(root), resolution=64)
    (root / "blendedmvs_pairs.npy").unlink()
    with pytest.raises(InputError, match="blendedmvs_pairs.npy"):
        BlendedMVS(split="train", ROOT=str(root), resolution=64)
    with pytest.raises(InputError, match="Habitat_77_scenes_nosplit.txt"):
        Habitat(77, split="nosplit", ROOT=str(_fake_root(reference_dir, "Habitat")), resolution=64)
    waymo = _fake_copy(reference_dir, tmp_path, "Waymo")
    pairs = dict(np.load(waymo / "waymo_pairs.npz"))
    pairs["pairs"] = pairs["pairs"][pairs["pairs"][:, 0] == 0]  # the last scene is never used
    if len(pairs["scenes"]) > 1:
        np.savez(waymo / "waymo_pairs.npz", **pairs)
        with pytest.raises(InputError, match="waymo_pairs.npz"):
            Waymo(ROOT=str(waymo), resolution=64)
