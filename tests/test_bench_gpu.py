"""experiments/bench_gpu.py --smoke runs every section on tiny sizes and writes its table."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # compiles ~15 programs: 1-2 min on 2 CPU cores
def test_smoke_run_writes_every_section(tmp_path):
    out = tmp_path / "bench.md"
    result = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_gpu.py"), "--smoke", "--out", str(out)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert "bf16 matmul ceiling" in text and "FAILED" not in text
    for header in ("| model |", "| pipeline images |", "| alignment images |"):
        assert header in text
    assert text.count("| 512_dpt |") == 2 and text.count("| device |") == 1
