"""Focal estimation against the official `estimate_focal_knowing_depth` fixtures."""
import json

import jax.numpy as jnp
import numpy as np

from dust3r_jax.focal import estimate_focal_knowing_depth, nanmedian_lower
from tests.parity import assert_close


def test_estimate_focal_matches_official(reference_dir):
    manifest = json.loads((reference_dir / "manifest.json").read_text())
    spec = manifest["utils"]["estimate_focal"]
    data = np.load(reference_dir / spec["file"])
    assert spec["runs"], "no focal runs in the manifest"
    for run in spec["runs"]:
        kw = {k: run[k] for k in ("min_focal", "max_focal") if k in run}
        focal = estimate_focal_knowing_depth(jnp.asarray(data[run["pts3d"]]), jnp.asarray(data[run["pp"]]),
                                             focal_mode=run["focal_mode"], **kw)
        assert_close(focal, data[run["key"]], name=run["key"])


def test_nanmedian_lower_takes_lower_middle_and_ignores_nan():
    x = jnp.array([[4.0, 1.0, jnp.nan, 3.0, 2.0], [jnp.nan] * 5, [5.0, jnp.inf, 1.0, jnp.nan, jnp.nan]])
    out = np.asarray(nanmedian_lower(x))
    assert out[0] == 2.0  # (1, 2, 3, 4) -> lower middle, jnp.nanmedian would give 2.5
    assert np.isnan(out[1])
    assert out[2] == 5.0


def test_fast_pnp_recovers_a_known_camera():
    import synthetic_scenes as synthetic
    from dust3r_jax.pnp import fast_pnp
    H, W, focal = 24, 32, 30.0
    cam2world = synthetic.look_at(np.array([0.3, -0.2, -1.5]), np.array([0.0, 0.2, 0.5]))
    _, pts_world = synthetic.render(cam2world, focal, H, W)
    res = fast_pnp(pts_world, focal, np.ones((H, W), bool), niter_PnP=10)
    assert res is not None
    np.testing.assert_allclose(res[1], cam2world, atol=1e-4)
    # unknown focal: the best of 21 tentative focals is kept
    est_focal, pose = fast_pnp(pts_world, None, np.ones((H, W), bool))
    assert abs(est_focal / focal - 1) < 0.1
    assert fast_pnp(pts_world, focal, np.zeros((H, W), bool)) is None  # fewer than 4 points
