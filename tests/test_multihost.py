"""Two processes on localhost (`jax.distributed.initialize`, gloo CPU collectives, 2 devices each)
run the same tiny training as one process with 4 devices and end with the same loss and params.

Each process reads only its half of every global batch (`make_array_from_process_local_data`).
Tolerance: losses rtol 1e-6 and params 1e-6 absolute (cross-process all-reduces may add in
another order; measured: identical).
"""
import json
import socket
import subprocess

import jax
import numpy as np
import pytest

from tests.train_helpers import cli_env, restore_numpy_state, run_cli, train_cmd

OVERRIDES = ("max_steps=4", "model.enc_depth=1", "model.dec_depth=1", "data.synthetic.test_pairs=8",
             "checkpoint.every_steps=0")


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _train_losses(workdir):
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["kind"] == "train"], [r for r in records if r["kind"].startswith("eval")]


@pytest.mark.multihost
@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    single = tmp_path / "single"
    done = run_cli(train_cmd(single, *OVERRIDES), cli_env(tmp_path / "cache1", devices=4))
    assert done.returncode == 0, done.stdout + done.stderr

    multi = tmp_path / "multi"
    port = _free_port()
    env = cli_env(tmp_path / "cache2", devices=2)
    procs = [subprocess.Popen(train_cmd(multi, *OVERRIDES) + ["--coordinator", f"localhost:{port}",
                                                              "--num-processes", "2", "--process-id", str(i)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
    assert "[Gloo]" in "".join(outputs) or "process" in "".join(outputs)

    assert (multi / "best" / "4").is_dir()  # best-by-eval checkpoint written by both processes
    want_losses, want_eval = _train_losses(single)
    got_losses, got_eval = _train_losses(multi)  # written by process 0 only
    assert len(got_losses) == len(want_losses) == 4
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-6)
    np.testing.assert_allclose(got_eval[-1]["loss_avg"], want_eval[-1]["loss_avg"], rtol=1e-6)
    for (path, got), want in zip(jax.tree_util.tree_flatten_with_path(restore_numpy_state(multi, 4)["params"])[0],
                                 jax.tree.leaves(restore_numpy_state(single, 4)["params"])):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=jax.tree_util.keystr(path))
