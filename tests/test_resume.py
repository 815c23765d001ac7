"""Exact resume: a run SIGKILLed between checkpoint saves and again during a save, restarted each
time, ends with bitwise the same params, optimiser state and RNG at step N as an uninterrupted run.

Subprocesses share a persistent compilation cache so that only the first one compiles.
"""
import json
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from tests.train_helpers import cli_env, restore_numpy_state, run_cli, train_cmd

NUM_STEPS = 8  # two epochs of 4 steps (tiny config: 64 pairs, batch 8, accum 2)
OVERRIDES = (f"max_steps={NUM_STEPS}", "checkpoint.every_steps=2", "checkpoint.keep=3",
             "data.synthetic.test_pairs=0", "model.enc_depth=1", "model.dec_depth=1")


def _complete_steps(workdir):
    folder = workdir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "commit_success.txt").exists())


def _tmp_entries(workdir):
    folder = workdir / "checkpoints"
    return [p.name for p in folder.iterdir() if "tmp" in p.name] if folder.is_dir() else []


def _start(workdir, env):
    log = open(workdir.parent / f"{workdir.name}.log", "a")
    return subprocess.Popen(train_cmd(workdir, *OVERRIDES), env=env, stdout=log, stderr=subprocess.STDOUT)


def _kill_when(proc, condition, timeout=600):
    """SIGKILL `proc` as soon as `condition()` holds; returns True if it held before proc ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.001)
    proc.kill()
    raise AssertionError("training subprocess did not reach the kill point in time")


def test_killed_runs_resume_exactly(tmp_path):
    env = cli_env(tmp_path / "compile_cache")
    reference = tmp_path / "reference"
    done = run_cli(train_cmd(reference, *OVERRIDES), env)
    assert done.returncode == 0, done.stdout + done.stderr

    workdir = tmp_path / "killed"
    # 1) between saves: once checkpoint 4 is complete and no save is in flight
    proc = _start(workdir, env)
    assert _kill_when(proc, lambda: 4 in _complete_steps(workdir) and not _tmp_entries(workdir))
    assert max(_complete_steps(workdir)) < NUM_STEPS
    # 2) during a save: while orbax's temporary folder of a later step exists
    first_latest = max(_complete_steps(workdir))
    proc = _start(workdir, env)
    caught = _kill_when(proc, lambda: any(int(n.split(".")[0]) > first_latest for n in _tmp_entries(workdir)
                                          if n.split(".")[0].isdigit()))
    assert caught, "the run finished before a save could be interrupted"
    assert max(_complete_steps(workdir)) < NUM_STEPS
    # 3) to the end
    done = run_cli(train_cmd(workdir, *OVERRIDES), env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[resume]" in done.stdout

    # the checkpoint's meta says where in the data the run stands: 4 steps per epoch, 2 micro-
    # batches per step, so step 6 = epoch 1, micro-batch 4
    meta = json.loads(next((reference / "checkpoints" / "6" / "meta").glob("*")).read_text())
    assert (meta["step"], meta["epoch"], meta["batch_in_epoch"]) == (6, 1, 4)

    want = restore_numpy_state(reference, NUM_STEPS)
    got = restore_numpy_state(workdir, NUM_STEPS)
    assert int(got["step"]) == NUM_STEPS
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
