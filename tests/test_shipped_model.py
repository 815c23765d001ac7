"""The model shipped in the package: loads offline by name, is checked by its checksum, and is
what `dust3r-jax reconstruct` and `dust3r-jax demo` use when no --weights is given."""
import shutil

import numpy as np
import PIL.Image
import pytest

from dust3r_jax import shipped
from dust3r_jax.cli import main
from dust3r_jax.errors import CheckpointError, InputError


def test_loads_by_name_at_its_training_resolution():
    import dust3r_jax

    model, params = dust3r_jax.load_model("procedural")
    assert tuple(model.config.img_size) == (128, 128)
    assert model.config.landscape_only is False  # inference mode, as the official load_model builds
    assert sum(np.size(x) for x in __import__("jax").tree.leaves(params)) == 5_225_024


def test_unknown_name_lists_the_shipped_ones():
    import dust3r_jax

    with pytest.raises(InputError, match="shipped: procedural"):
        dust3r_jax.load_model("procedurall")


def test_corrupted_weights_fail_their_checksum(tmp_path):
    copy = tmp_path / "procedural"
    shutil.copytree(shipped.MODELS_DIR / "procedural", copy)
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="fails its checksum") as info:
        shipped.shipped_folder("procedural", models_dir=tmp_path)
    assert "\n" not in str(info.value)
    shipped.shipped_folder("procedural")  # the package's own copy is intact


def _render_views(folder, seed=2_000_123, views=3):
    from dust3r_jax.data.procedural.scene import make_scene, render_view

    folder.mkdir()
    scene = make_scene(seed, views)
    for v in range(views):
        PIL.Image.fromarray(render_view(scene, v, 160, 120)["image"]).save(folder / f"v{v}.png")


def test_reconstruct_without_weights_uses_the_shipped_model(tmp_path, capsys):
    _render_views(tmp_path / "images")
    code = main(["reconstruct", str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--niter", "20", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "procedural (shipped)" in out
    import json

    cameras = json.loads((tmp_path / "out" / "cameras.json").read_text())["images"]
    assert [c["processed"]["width"] for c in cameras] == [128] * 3  # the model's own resolution
    assert (tmp_path / "out" / "scene.glb").stat().st_size > 0


def test_demo_compares_with_the_ground_truth(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "demo"), "--views", "3", "--niter", "30", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "depth AbsRel" in out and "RRA@15" in out
    for name in ("comparison.png", "cameras_top_view.png", "reconstruction/cameras.json",
                 "reconstruction/sparse/0/images.txt", "reconstruction/points.ply"):
        assert (tmp_path / "demo" / name).is_file(), name
