"""Hostile and careless inputs: each ends with exit code 2 and one line, touches no input, and
stays within bounded memory and time.

* `--out` variants of `dust3r-jax reconstruct` (an input folder, the weights, the current or
  home folder, an unmarked folder, an unwritable parent) are refused before any compute: the
  images and weights given with them are deliberately unusable, so an error naming anything but
  `--out` would show that work started first. Leftovers of killed runs are cleaned or restored.
* Hostile checkpoints (generated here: malicious pickles, zip bombs, deep nesting, bad
  hyper-parameters, overflowing shapes, tensors sharing one small storage) go through
  `dust3r-jax convert` in a subprocess whose peak resident memory is read with `os.wait4`.
"""
import argparse
import hashlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from dust3r_jax.cli import main
from dust3r_jax.commands import output_folder
from dust3r_jax.commands.reconstruct import _check_weights
from pth_writer import StorageRef, TensorRef, pickle_torch_style, reduce_call_pickle, write_dust3r_checkpoint, \
    write_pth, write_zip_checkpoint

PEAK_MEMORY_LIMIT = 1 << 30  # bytes: every hostile checkpoint is refused well below this
TIME_LIMIT_S = 60            # generous for a loaded 2-core machine; typically a few seconds


# ---- helpers ---------------------------------------------------------------------------------------
def _snapshot(*roots):
    """{path: (size, mtime_ns, sha256)} of every file under `roots`: to prove nothing was touched."""
    state = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            info = path.stat()
            state[str(path)] = (info.st_size, info.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def _one_line_error(capsys, argv, *needles):
    """Runs the CLI in-process; it must exit 2 with one line on stderr containing `needles`."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dust3r-jax {argv[0]}: error:") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def photos(tmp_path, reference_dir):
    """A folder of two real images (what a user points reconstruct at)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for image in sorted((reference_dir / "loader" / "images").glob("*.png"))[:2]:
        (folder / image.name).write_bytes(image.read_bytes())
    return folder


@pytest.fixture
def weights(tmp_path):
    """A weights file that fails to load: reaching it would mean the --out check came too late."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.pth").write_text("not a checkpoint")
    return folder / "model.pth"


def _reconstruct_argv(images, weights, out, *extra):
    return ["reconstruct", images, "--weights", weights, "--out", out, "--quiet", *extra]


# ---- --out: never replace what the user did not ask to replace ------------------------------------
@pytest.mark.parametrize("case", ["images folder", "inside images", "holds images", "image file's folder",
                                  "weights folder", "weights file", "current folder", "parent of current",
                                  "home folder"])
def test_out_among_the_inputs_is_refused_before_any_work(case, tmp_path, photos, weights, capsys, monkeypatch):
    images = photos
    if case == "images folder":
        out = photos
    elif case == "inside images":
        out = photos / "result"
    elif case == "holds images":
        out = tmp_path
    elif case == "image file's folder":
        images, out = sorted(photos.iterdir())[0], photos
    elif case == "weights folder":
        out = weights.parent
    elif case == "weights file":
        out = weights
    elif case in ("current folder", "parent of current"):
        work = tmp_path / "work"
        work.mkdir()
        (work / "notes.txt").write_text("keep me")
        monkeypatch.chdir(work)
        out = "." if case == "current folder" else ".."
    else:
        home = tmp_path / "home"
        home.mkdir()
        (home / "notes.txt").write_text("keep me")
        monkeypatch.setenv("HOME", str(home))
        out = home
    before = _snapshot(tmp_path)
    _one_line_error(capsys, _reconstruct_argv(images, weights, out, "--overwrite"), "--out")
    assert _snapshot(tmp_path) == before


def test_overwrite_replaces_only_a_marked_folder(tmp_path, photos, weights, capsys):
    out = tmp_path / "result"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    before = _snapshot(tmp_path)
    _one_line_error(capsys, _reconstruct_argv(photos, weights, out, "--overwrite"),
                    "was not written by dust3r-jax reconstruct", output_folder.MARKER)
    _one_line_error(capsys, _reconstruct_argv(photos, weights, out), "already exists")
    assert _snapshot(tmp_path) == before
    # a marked folder passes the --out checks; the run then stops at the (bad) weights
    (out / output_folder.MARKER).write_text("{}")
    _one_line_error(capsys, _reconstruct_argv(photos, weights, out, "--overwrite"), "model.pth")
    assert (out / "thesis.tex").read_text() == "years of work"


def test_symlinked_out_is_refused(tmp_path, photos, weights, capsys):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / output_folder.MARKER).write_text("{}")
    (tmp_path / "link").symlink_to(target)
    _one_line_error(capsys, _reconstruct_argv(photos, weights, tmp_path / "link", "--overwrite"), "symbolic link")


@pytest.mark.parametrize("case", ["parent is a file", "read-only file system"])
def test_unwritable_out_is_refused_before_any_work(case, tmp_path, photos, weights, capsys):
    if case == "parent is a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "result"
    else:
        if not os.path.isdir("/proc/self"):
            pytest.skip("no /proc")
        out = "/proc/self/dust3r-result"  # not writable even for root
    before = _snapshot(tmp_path)
    _one_line_error(capsys, _reconstruct_argv(photos, weights, out), "--out")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("flag, value", [("--lr", "nan"), ("--lr", "-1"), ("--lr", "inf"),
                                         ("--min-conf-thr", "nan"), ("--min-conf-thr", "inf"),
                                         ("--min-conf-thr", "-2")])
def test_meaningless_numbers_are_refused_before_any_work(flag, value, tmp_path, photos, weights, capsys):
    _one_line_error(capsys, _reconstruct_argv(photos, weights, tmp_path / "result", flag, value), flag)
    assert not (tmp_path / "result").exists()


def test_weights_may_be_omitted_by_callers():
    """`--weights` checks tolerate None (a packaged default model) and protect nothing then."""
    assert _check_weights(None) is None and output_folder.weights_paths(None) == []


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_killed_runs_are_cleaned_and_the_previous_result_restored(tmp_path, weights, capsys):
    """A kill between the two renames left `.result.old-PID` (the previous result) and no `result`:
    the next run puts it back, removes dead runs' partial folders and keeps a live run's."""
    dead, alive = _dead_pid(), os.getpid()
    old = tmp_path / f".result.old-{dead}"
    old.mkdir()
    (old / output_folder.MARKER).write_text("{}")
    (old / "cameras.json").write_text("previous")
    (tmp_path / f".result.partial-{dead}").mkdir()
    (tmp_path / f".result.partial-{alive}").mkdir()
    (tmp_path / f".other.partial-{dead}").mkdir()  # another output's: not ours to judge
    (tmp_path / "empty").mkdir()
    assert main([str(a) for a in _reconstruct_argv(tmp_path / "empty", weights, tmp_path / "result")]) == 2
    warning, error = capsys.readouterr().err.strip().split("\n")
    assert warning.startswith("dust3r-jax reconstruct: warning: restored") and f".result.old-{dead}" in warning
    assert error.startswith("dust3r-jax reconstruct: error:") and "already exists" in error
    assert (tmp_path / "result" / "cameras.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [
        f".other.partial-{dead}", f".result.partial-{alive}"]


def test_sigkill_during_export_leaves_nothing_the_next_run_keeps(tmp_path):
    """A run killed while writing leaves `.result.partial-PID`; the next run's check removes it and
    the previous result is intact."""
    out = tmp_path / "result"
    out.mkdir()
    (out / output_folder.MARKER).write_text("{}")
    (out / "cameras.json").write_text("previous")
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from dust3r_jax.commands.output_folder import write_atomically
        def write(folder):
            (folder / "half.txt").write_text("half")
            os.kill(os.getpid(), signal.SIGKILL)
        write_atomically(Path({str(out)!r}), True, write)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -signal.SIGKILL
    assert any(p.name.startswith(".result.partial-") for p in tmp_path.iterdir())
    output_folder.recover_interrupted(out)
    assert [p.name for p in tmp_path.iterdir()] == ["result"]
    assert (out / "cameras.json").read_text() == "previous"


# ---- hostile checkpoints: one line, bounded memory and time ---------------------------------------
LIN224 = ("AsymmetricCroCo3DStereo(pos_embed='RoPE100', img_size=(224, 224), head_type='linear', "
          "output_mode='pts3d', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), enc_embed_dim=128, "
          "enc_depth=2, enc_num_heads=2, dec_embed_dim=64, dec_depth=3, dec_num_heads=2)")
VITL_KEYS = "DUSt3R_ViTLarge_BaseDecoder_224_linear"


def _fixture_state_dict(reference_dir):
    from dust3r_jax.checkpoints import read_pth

    return dict(read_pth(reference_dir / "models" / "lin224.pth")["model"])


def _bomb(path, declared_bytes):
    """A checkpoint whose one storage is `declared_bytes` of zeros, deflated (~1000x smaller)."""
    numel = declared_bytes // 4
    lazy = np.broadcast_to(np.zeros(1, np.float32), (numel,))  # declares numel, owns 4 bytes
    tensor = TensorRef(StorageRef("0", lazy), 0, (numel,), (1,))
    data_pkl, _ = pickle_torch_style({"args": argparse.Namespace(model=LIN224), "model": {"enc_norm.weight": tensor}})
    chunk = bytes(1 << 22)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/byteorder", "little")
        with archive.open("archive/data/0", "w", force_zip64=True) as member:
            for _ in range(declared_bytes // len(chunk)):
                member.write(chunk)
        archive.writestr("archive/version", "3\n")


def _deep_pickle(depth):
    """data.pkl of {'model': {}, 'deep': [[[...]]]} nested `depth` lists deep (no recursion to build)."""
    key = "deep".encode()
    nested = b"]" * depth + b"a" * (depth - 1)  # EMPTY_LIST x depth, then APPEND each into its parent
    return (b"\x80\x02}" + pickle.BINUNICODE + len(key).to_bytes(4, "little") + key + nested
            + pickle.SETITEM + pickle.STOP)


def _safetensors(path, header: bytes, data: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def _hf_folder(folder, config, header=None):
    folder.mkdir()
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    _safetensors(folder / "model.safetensors", header or b"{}")
    return folder


def _expanded_vitl(path, reference_dir):
    """Every tensor of the released ViT-L (877 keys, 2.1 GB) as a stride-0 view of one float."""
    entry = json.loads((reference_dir / "models" / "official_vitl_state_dict_keys.json").read_text())[VITL_KEYS]
    one = StorageRef("0", np.zeros(1, np.float32))
    state_dict = {item["key"]: TensorRef(one, 0, item["shape"], [0] * len(item["shape"]))
                  for item in entry["state_dict"]}
    write_pth(path, {"args": argparse.Namespace(model=entry["model_string"]), "model": state_dict})


def _hyper(**changes):
    """LIN224 with some constructor arguments replaced (a small file declaring another model)."""
    text = LIN224
    for key, value in changes.items():
        start = text.index(f"{key}=")
        end = min(i for i in (text.find(",", start), text.find(")", start)) if i > 0)
        text = text[:start] + f"{key}={value}" + text[end:]
    return text


def _make_hostile(case, folder, reference_dir):
    """(convert arguments, words the one-line error must hold) for one hostile checkpoint."""
    path = folder / "hostile.pth"
    if case == "malicious pickle":
        write_zip_checkpoint(path, reduce_call_pickle("os", "system", "touch PWNED"), {})
        return [path], ["refuses to load global 'os.system'"]
    if case == "zip bomb":
        _bomb(path, 512 << 20)
        return [path], ["zip bomb"]
    if case == "deep pickle":
        write_zip_checkpoint(path, _deep_pickle(100_000), {})
        return [path], ["levels deep"]
    if case == "empty state dict, ViT-L args":
        entry = json.loads((reference_dir / "models" / "official_vitl_state_dict_keys.json").read_text())[VITL_KEYS]
        write_dust3r_checkpoint(path, {}, entry["model_string"])
        return [path], ["state dict is empty"]
    if case == "no heads":
        state_dict = {k: v for k, v in _fixture_state_dict(reference_dir).items() if not k.startswith("downstream_head")}
        write_dust3r_checkpoint(path, state_dict, LIN224)
        return [path], ["looks like CroCo", "--croco"]
    if case == "--croco without the trunk":
        state_dict = {k: v for k, v in _fixture_state_dict(reference_dir).items() if k.startswith("downstream_head")}
        write_dust3r_checkpoint(path, state_dict, LIN224)
        return [path, "--croco"], ["has no key"]
    if case == "expanded ViT-L":
        _expanded_vitl(path, reference_dir)
        return [path], ["share or repeat storage"]
    if case.startswith("hyper-parameter "):
        key, value = case[len("hyper-parameter "):].split("=")
        write_dust3r_checkpoint(path, _fixture_state_dict(reference_dir), _hyper(**{key: value}))
        return [path], [key]
    if case == "config.json enc_depth=20000":
        return [_hf_folder(folder / "hf", {"enc_depth": 20000})], ["enc_depth=20000"]
    if case == "deep config.json":
        return [_hf_folder(folder / "hf", "[" * 100_000 + "]" * 100_000)], ["nested too deeply"]
    if case == "deep safetensors header":
        header = b'{"__metadata__": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        return [_hf_folder(folder / "hf", {}, header)], ["nested too deeply"]
    if case == "safetensors shape overflowing int64":
        header = json.dumps({"w": {"dtype": "F32", "shape": [2 ** 31] * 3 + [4], "data_offsets": [0, 0]}}).encode()
        # numpy's int64 product of this shape wraps around to 0, which matched the empty span
        return [_hf_folder(folder / "hf", {}, header)], ["needs 158456325028528675187087900672"]
    if case == "safetensors empty shape with a huge side":
        header = json.dumps({"w": {"dtype": "F32", "shape": [0, 2 ** 62], "data_offsets": [0, 0]}}).encode()
        return [_hf_folder(folder / "hf", {}, header)], ["malformed shape"]
    if case == "broken JSON in a converted folder":
        (folder / "converted").mkdir()
        (folder / "converted" / "dust3r_jax_model.json").write_text('{"model_config": {')
        return [folder / "converted"], ["invalid JSON"]
    raise ValueError(case)


HOSTILE = ["malicious pickle", "zip bomb", "deep pickle", "empty state dict, ViT-L args", "no heads",
           "--croco without the trunk", "expanded ViT-L", "hyper-parameter enc_depth=20000",
           "hyper-parameter enc_embed_dim=0", "hyper-parameter enc_num_heads='2'",
           "hyper-parameter dec_embed_dim=64.5", "hyper-parameter enc_embed_dim=1048576",
           "config.json enc_depth=20000", "deep config.json", "deep safetensors header",
           "safetensors shape overflowing int64", "safetensors empty shape with a huge side", "broken JSON in a converted folder"]


# Linux carries a process's peak RSS across fork and exec, so a child forked from this (large)
# pytest process would report at least our own peak. A small launcher process forks the command
# instead and reports the command's own figure from os.wait4.
_LAUNCHER = textwrap.dedent("""
    import json, os, subprocess, sys, time
    start = time.monotonic()
    child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps([child.returncode, usage.ru_maxrss * 1024, time.monotonic() - start]))
""")


def _run_measured(argv, cwd):
    """(exit code, stderr, peak resident bytes, seconds) of `python -m dust3r_jax.cli ARGV`."""
    result = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "dust3r_jax.cli",
                             *map(str, argv)], cwd=cwd, capture_output=True, text=True, errors="replace")
    code, peak, seconds = json.loads(result.stdout)
    return code, result.stderr, peak, seconds


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_checkpoint_is_refused_in_one_line_with_bounded_memory(case, tmp_path, reference_dir):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    arguments, words = _make_hostile(case, inputs, reference_dir)
    before = _snapshot(inputs)
    code, err, peak, seconds = _run_measured(["convert", arguments[0], tmp_path / "out", *arguments[1:]], tmp_path)
    print(f"\n{case}: peak {peak / 2 ** 20:.0f} MiB, {seconds:.1f} s, {err.strip()[:160]}")
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dust3r-jax convert: error:") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], err
    assert peak < PEAK_MEMORY_LIMIT, f"{case}: peak {peak / 2 ** 20:.0f} MiB"
    assert seconds < TIME_LIMIT_S
    assert _snapshot(inputs) == before and not (tmp_path / "out").exists()
    assert not (tmp_path / "PWNED").exists()


def test_training_from_croco_asks_for_random_heads_explicitly(tmp_path, reference_dir):
    """init_from a CroCo file still works (the official recipe): load_pretrained passes croco=True."""
    from dust3r_jax.train.loop import load_pretrained

    state_dict = {k: v for k, v in _fixture_state_dict(reference_dir).items()
                  if not k.startswith(("downstream_head", "dec_blocks2."))}
    kwargs = dict(enc_embed_dim=128, enc_depth=2, enc_num_heads=2, dec_embed_dim=64, dec_depth=3, dec_num_heads=2,
                  pos_embed="RoPE100", img_size=(224, 224))
    write_pth(tmp_path / "croco.pth", {"model": state_dict, "croco_kwargs": kwargs})
    params = load_pretrained(tmp_path / "croco.pth")
    assert "downstream_head1" in params and "dec_blocks2_0" in params


# ---- results: unique names, degenerate outcomes --------------------------------------------------
def _image_pair(reference_dir, tmp_path, names):
    """The land/port fixture images copied under `names` (paths relative to tmp_path)."""
    sources = [reference_dir / "loader" / "images" / f for f in ("land_640x480.png", "port_480x640.png")]
    paths = []
    for source, name in zip(sources, names):
        path = tmp_path / os.fsdecode(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
        paths.append(path)
    return paths


def test_same_file_names_in_two_folders_export_apart(tmp_path, reference_dir, capsys):
    """a/NAME and b/NAME (NAME with a space and a non-UTF-8 byte) export as two depth maps and two
    COLMAP images with distinct names, listed in cameras.json, read back by pycolmap."""
    from dust3r_jax.export import read_cameras_json

    name = b"my ph\xffoto.png"
    paths = _image_pair(reference_dir, tmp_path, [b"a/" + name, b"b/" + name])
    out = tmp_path / "result"
    code = main(["reconstruct", str(paths[0].parent), str(paths[1].parent), "--weights",
                 str(reference_dir / "models" / "lin224.pth"), "--out", str(out), "--image-size", "224",
                 "--batch-size", "2", "--min-conf-thr", "1.5", "--quiet"])
    assert code == 0, capsys.readouterr().err
    cameras = json.loads((out / "cameras.json").read_text())["images"]
    assert [c["name"] for c in cameras] == ["my_ph_oto", "my_ph_oto_2"]
    assert [c["colmap_name"] for c in cameras] == ["my_ph_oto.png", "my_ph_oto_2.png"]
    assert [c["path"] for c in cameras] == [str(p).replace("\udcff", "\\xff") for p in paths]
    assert read_cameras_json(out / "cameras.json")["files"] == [p.name for p in paths]
    for folder in ("depth", "conf"):
        assert sorted(p.name for p in (out / folder).glob("*.npy")) == ["my_ph_oto.npy", "my_ph_oto_2.npy"]
    pycolmap = pytest.importorskip("pycolmap")
    model = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert sorted(image.name for image in model.images.values()) == ["my_ph_oto.png", "my_ph_oto_2.png"]


def test_unique_stems_are_stable_and_never_collide():
    from dust3r_jax.export.scene import unique_stems

    assert unique_stems(["a/img.jpg", "b/img.jpg"]) == ["img", "img_2"]
    # a file really called img_2 keeps its name; the copy of img takes the next free one
    assert unique_stems(["a/img.jpg", "b/img.jpg", "c/img_2.png", "d/IMG.png"]) == ["img", "img_3", "img_2", "IMG_4"]
    assert unique_stems(["my photo.jpg", "tab\there.png", ".png", "x/"]) == ["my_photo", "tab_here", "png", "x"]


def test_degenerate_result_is_an_error_and_keeps_the_previous_output(tmp_path, reference_dir, capsys):
    """Two black images: zero focal, identity poses. Exit 2, one line, the previous --out intact."""
    import PIL.Image

    black = tmp_path / "black"
    black.mkdir()
    for name in ("x.png", "y.png"):
        PIL.Image.fromarray(np.zeros((240, 320, 3), np.uint8)).save(black / name)
    out = tmp_path / "result"
    out.mkdir()
    (out / output_folder.MARKER).write_text("{}")
    (out / "cameras.json").write_text("previous")
    argv = ["reconstruct", black, "--weights", reference_dir / "models" / "lin224.pth", "--out", out,
            "--image-size", 224, "--batch-size", 2, "--quiet", "--overwrite"]
    _one_line_error(capsys, argv, "degenerate reconstruction", "focal")
    assert (out / "cameras.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["black", "result"]
