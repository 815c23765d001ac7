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
import math
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
from pth_writer import GlobalRef, StorageRef, TensorRef, pickle_torch_style, write_dust3r_checkpoint, \
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
