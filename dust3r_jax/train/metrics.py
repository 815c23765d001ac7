"""Training logs: one line per report on stdout and one JSON object per line in `metrics.jsonl`.

Only process 0 writes (every process computes the same replicated metrics). TensorBoard event
files are not written: without TensorFlow installed they would need a hand-written protobuf
writer; `metrics.jsonl` loads into pandas or any plotting tool directly.
"""
import json
import time
from pathlib import Path

import jax


class MetricsLogger:
    def __init__(self, workdir, filename="metrics.jsonl", stream=None):
        import sys

        self.is_writer = jax.process_index() == 0
        self.path = Path(workdir) / filename
        self.stream = stream or sys.stdout
        if self.is_writer:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, kind, step, values):
        """Appends {'kind', 'step', 'time', **values} to the JSON lines and prints a short line."""
        if not self.is_writer:
            return
        record = {"kind": kind, "step": int(step), "time": time.time(), **{k: _plain(v) for k, v in values.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        shown = " ".join(f"{k}={_short(v)}" for k, v in values.items())
        print(f"[{kind}] step {int(step)}: {shown}", file=self.stream, flush=True)


def _plain(value):
    try:
        return float(value) if not isinstance(value, (str, int, bool)) else value
    except (TypeError, ValueError):
        return str(value)


def _short(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
