"""Two processes on localhost (`jax.distributed.initialize`, gloo CPU collectives, 2 devices each)
reconstruct what one process with 4 devices reconstructs: every process gets the whole inference
output and the whole aligned scene (tests/scale_out_worker.py)."""
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.train_helpers import REPO, cli_env

WORKER = REPO / "tests" / "scale_out_worker.py"


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.multihost
def test_two_processes_reconstruct_what_one_process_does(tmp_path):
    single = tmp_path / "single.npz"
    done = subprocess.run([sys.executable, str(WORKER), str(single)], env=cli_env(devices=4),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr

    port = _free_port()
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(out), f"localhost:{port}", "2", str(i)],
                              env=cli_env(devices=2), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, out in enumerate(outs)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)

    want = np.load(single)
    assert int(want["devices"]) == 4 and int(want["processes"]) == 1
    for out in outs:
        got = np.load(out)
        assert int(got["devices"]) == 4 and int(got["processes"]) == 2
        for key in ("pts3d", "pts3d_other", "conf", "cam2world", "focals", "depth0"):
            np.testing.assert_allclose(got[key], want[key], rtol=1e-6, atol=1e-6, err_msg=key)
        np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-6)
