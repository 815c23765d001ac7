"""geometry.py against the official geotrf/inv fixtures and basic identities."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from dust3r_jax import geometry
from tests.parity import assert_close

_KWARGS = {"norm': 1, 'ncol': 2": dict(norm=1, ncol=2), "norm': 2.5": dict(norm=2.5)}


def _geotrf_cases(reference_dir):
    manifest = json.loads((reference_dir / "manifest.json").read_text())
    cases = manifest["utils"]["geotrf_inv"]["cases"]
    return {name: desc for name, desc in cases.items() if name != "inv"}


def _kwargs_from_description(desc):
    # "geotrf(Trf [3, 3], pts [13, 3], **{'norm': 1, 'ncol': 2}) with ..." -> dict
    import ast
    start = desc.index("**") + 2
    end = desc.index("}", start) + 1
    return ast.literal_eval(desc[start:end])


def test_geotrf_matches_official(reference_dir):
    data = np.load(reference_dir / "utils" / "geotrf_inv.npz")
    for name, desc in _geotrf_cases(reference_dir).items():
        kw = _kwargs_from_description(desc)
        use_numpy = "numpy" in desc
        trf, pts = data[f"{name}__Trf"], data[f"{name}__pts"]
        if not use_numpy:
            trf, pts = jnp.asarray(trf), jnp.asarray(pts)
        out = geometry.geotrf(trf, pts, **kw)
        assert isinstance(out, np.ndarray) == use_numpy, name
        assert_close(out, data[f"{name}__out"], name=name)


def test_inv_matches_official(reference_dir):
    data = np.load(reference_dir / "utils" / "geotrf_inv.npz")
    assert_close(geometry.inv(jnp.asarray(data["inv__in"])), data["inv__out"], name="inv")


def test_quaternion_roundtrip():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    R = geometry.quat_to_rotmat(q)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    q2 = geometry.rotmat_to_quat(R)
    # same rotation, sign may flip
    np.testing.assert_allclose(np.abs(np.sum(q * q2, axis=-1)), 1.0, atol=1e-10)
    np.testing.assert_allclose(geometry.quat_to_rotmat(q2), R, atol=1e-10)


def test_signed_log1p_inverse():
    x = np.array([-50.0, -1.0, -1e-3, 0.0, 2e-3, 3.0, 70.0])
    np.testing.assert_allclose(geometry.signed_expm1(geometry.signed_log1p(x)), x, rtol=1e-12)


def test_registration_recovers_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(200, 3))
    q = rng.normal(size=4)
    R = geometry.quat_to_rotmat(q / np.linalg.norm(q))
    dst = 2.5 * src @ R.T + np.array([1.0, -2.0, 0.5])
    s, R2, T2 = geometry.rigid_points_registration(src, dst, rng.uniform(0.5, 2, size=200))
    assert s == pytest.approx(2.5)
    np.testing.assert_allclose(R2, R, atol=1e-10)
    np.testing.assert_allclose(T2, [1.0, -2.0, 0.5], atol=1e-10)


def test_depthmap_backprojection_reprojects_to_pixels():
    depth = np.random.default_rng(2).uniform(1, 3, size=(5, 7)).astype(np.float32)
    pts = geometry.depthmap_to_pts3d(jnp.asarray(depth), 10.0, jnp.array([3.5, 2.5]))
    K = geometry.intrinsics_matrix(np.array([10.0]), np.array([[3.5, 2.5]]))[0]
    uv = geometry.geotrf(jnp.asarray(K, jnp.float32), pts, norm=1, ncol=2)
    assert_close(uv, geometry.xy_grid(7, 5), rel=1e-6, name="reprojected pixels")
    assert_close(pts[..., 2], depth, rel=1e-7, name="depth")
