"""Parity tolerances, stated once.

Every comparison with the official outputs goes through `assert_close`: the largest absolute
difference must be within `rel` times the largest magnitude of the expected array (the
criterion of the issue: "within 1e-4 of each array's largest magnitude").
"""
import numpy as np

# float32 parity with the official PyTorch code.
REL_FP32 = 1e-4


def max_rel_error(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(expected))), 1e-30) if expected.size else 1.0
    return float(np.max(np.abs(actual - expected))) / scale if expected.size else 0.0


def assert_close(actual, expected, rel=REL_FP32, name="array"):
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    assert np.all(np.isfinite(actual) == np.isfinite(expected)), f"{name}: finiteness differs"
    err = max_rel_error(np.nan_to_num(actual), np.nan_to_num(expected))
    assert err <= rel, f"{name}: max |diff| / max |expected| = {err:.3g} > {rel:.1g}"
