"""JSON from checkpoint files (HF config.json, safetensors headers, converted descriptions).

`json.loads` recurses once per nesting level: a file of a million `[` raises RecursionError deep
in the parser, and a few hundred levels that do parse can still exhaust the recursion of whatever
walks the result. Real files nest two or three levels, so anything past MAX_DEPTH is refused
with one line.
"""
import json

from dust3r_jax.errors import CheckpointError

MAX_DEPTH = 32


def _depth(value) -> int:
    """Nesting depth of a parsed JSON value (iterative: the value may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json(raw, source: str, max_depth: int = MAX_DEPTH):
    """The value of JSON text `raw` (bytes or str); CheckpointError naming `source` if it is not
    UTF-8, not JSON, or nested deeper than `max_depth` levels."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
        value = json.loads(text)
    except UnicodeDecodeError as err:
        raise CheckpointError(f"{source}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{source}: invalid JSON ({err})") from None
    except RecursionError:
        raise CheckpointError(f"{source}: JSON nested too deeply (more than {max_depth} levels)") from None
    if _depth(value) > max_depth:
        raise CheckpointError(f"{source}: JSON nested too deeply (more than {max_depth} levels)")
    return value
