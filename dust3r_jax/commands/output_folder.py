"""The output folder of `dust3r-jax reconstruct`: where it may go, and how it is replaced.

Rules (each broken rule is a one-line `InputError`, raised before any compute):
* `--out` may not be, contain or lie inside an input (an image folder, the folder of an image
  file, the weights), and may not be or contain the current folder or the home folder;
* an existing `--out` is replaced only with `--overwrite`, and only if a previous reconstruct
  wrote it: every output holds the marker file `.dust3r-jax-output` (a small JSON);
* the parent of `--out` must be writable.

Writing is atomic: the result goes to the hidden sibling `.NAME.partial-PID`; at the end the old
result (if any) is renamed to `.NAME.old-PID`, the new one to `NAME`, and the old one removed.
A run killed in between leaves those siblings behind; the next run removes the `.partial` ones of
dead processes and, if `NAME` is missing, renames a dead run's `.old` back to `NAME`.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from dust3r_jax.errors import InputError

MARKER = ".dust3r-jax-output"
_SIBLING = re.compile(r"^\.(?P<name>.+)\.(?P<kind>partial|old)-(?P<pid>\d+)$")


# ---- where --out may go ----------------------------------------------------------------------------
def input_folders(images: list[str]) -> list[Path]:
    """The folders that hold the inputs: each folder argument, and each image file's folder."""
    folders = []
    for item in images:
        path = Path(os.path.realpath(item))
        if path.is_dir():
            folders.append(path)
        elif path.exists():
            folders.append(path.parent)
    return folders


def weights_paths(weights) -> list[Path]:
    """The weights file or folder to protect; none when no path was given (a packaged default)."""
    if weights is None:
        return []
    return [Path(os.path.realpath(weights))]


def check_location(out: Path, inputs: list[Path]) -> None:
    """Refuses an `out` that would overwrite or sit among the inputs, the current or home folder.

    inputs: folders and files the run reads (resolved); `out` may not be one of them, hold one,
    or lie inside one. The current and home folders may hold `out` but not be or lie inside it.
    """
    target = Path(os.path.realpath(out))
    for path in inputs:
        if target == path or path.is_relative_to(target):
            raise InputError(f"--out {out}: would replace the input {path}; choose a new folder")
        if target.is_relative_to(path):
            raise InputError(f"--out {out}: lies inside the input {path}; choose a folder outside the inputs")
    for name, path in (("current folder", Path.cwd()), ("home folder", Path.home())):
        path = Path(os.path.realpath(path))
        if target == path or path.is_relative_to(target):
            raise InputError(f"--out {out}: would replace the {name} {path}; choose a new folder")


def check_replaceable(out: Path, overwrite: bool) -> None:
    """An existing `out` must be a folder a previous reconstruct wrote, and --overwrite given."""
    if out.is_symlink():
        raise InputError(f"--out {out}: is a symbolic link; give the folder itself")
    if not out.exists():
        return
    if not overwrite:
        raise InputError(f"--out {out}: already exists (choose another folder or pass --overwrite)")
    if not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if not (out / MARKER).is_file():
        raise InputError(f"--out {out}: was not written by dust3r-jax reconstruct (no {MARKER} file); "
                         "--overwrite only replaces such folders")
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: exists but is not writable, so it cannot be replaced")


def check_writable_parent(out: Path) -> None:
    """The folder that will hold `out` (or its nearest existing ancestor) accepts new entries."""
    parent = Path(os.path.abspath(out)).parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"--out {out}: {existing} is not a folder")
    if existing != parent:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(f"--out {out}: cannot create {parent} ({existing} is not writable)")
        return
    try:  # a real probe: os.access says yes to root even on a read-only file system
        os.rmdir(tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent))
    except OSError as err:
        raise InputError(f"--out {out}: cannot write into {parent} ({err.strerror})") from None


# ---- leftovers of killed runs ---------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _warn(message: str) -> None:
    print(f"dust3r-jax reconstruct: warning: {message}", file=sys.stderr)


def recover_interrupted(out: Path) -> None:
    """Cleans the hidden siblings of `out` left by runs that were killed (their PID is gone).

    A `.NAME.partial-PID` is a half-written result: removed. A `.NAME.old-PID` is a previous
    result that a killed run had moved aside: renamed back to `out` if `out` is missing, else
    removed if it carries the marker (it was replaced by a complete result), else reported.
    """
    out = Path(os.path.abspath(out))
    if not out.parent.is_dir():
        return
    for sibling in sorted(out.parent.iterdir()):
        match = _SIBLING.match(sibling.name)
        if not match or match["name"] != out.name or _pid_alive(int(match["pid"])):
            continue
        if match["kind"] == "partial":
            shutil.rmtree(sibling, ignore_errors=True)
        elif not out.exists() and not out.is_symlink():
            sibling.rename(out)
            _warn(f"restored {out} from {sibling.name}, left by an interrupted run")
        elif (sibling / MARKER).is_file():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            _warn(f"{sibling} is left over from an interrupted run; remove it if it is not needed")


# ---- atomic write ---------------------------------------------------------------------------------
def write_marker(folder: Path) -> None:
    """The file by which --overwrite recognises a folder that reconstruct wrote."""
    content = {"written_by": "dust3r-jax reconstruct", "format": 1,
               "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    (folder / MARKER).write_text(json.dumps(content) + "\n")


def write_atomically(out: Path, overwrite: bool, write) -> None:
    """Calls write(tmp) on a hidden sibling folder, then renames it to `out` (replacing it if asked).

    `out` is replaced only if it carries the marker (checked again here: it may have appeared
    while the result was computed). On any failure the new files are removed and `out` is left
    as it was.
    """
    out = Path(os.path.abspath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        write_marker(tmp)
        if out.exists() or out.is_symlink():
            check_replaceable(out, overwrite)
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            old.rename(out)  # put the previous result back
        raise
    shutil.rmtree(old, ignore_errors=True)
