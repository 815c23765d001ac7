"""Shared test fixtures: where the reference data lives, and CPU-only JAX."""
import os
from pathlib import Path

import pytest

# Tests run on CPU with 8 virtual devices so that sharding tests see a mesh. Set before jax loads.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO_ROOT = Path(__file__).resolve().parents[1]
# The official-code fixtures sit beside the checkout (../shared/reference); DUST3R_REFERENCE
# points elsewhere (e.g. at a second fixture set with other seeds and shapes).
REFERENCE = Path(os.environ.get("DUST3R_REFERENCE", REPO_ROOT.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference fixtures not found at {REFERENCE} (set DUST3R_REFERENCE)")
    return REFERENCE
