"""An in-memory source of training pairs in the data loaders' batch format (tests, benchmarks).

Each pair is a deterministic function of (seed, pair index): two posed pinhole cameras looking at
a slanted plane with holes, depth -> world `pts3d`, and an image that is a smooth function of the
world points (so the network has something to learn). The epoch order follows the official
batched sampler: `default_rng(epoch + 777).permutation(len)`, floored to whole global batches,
one resolution per batch drawn from the same generator.

Batches are NHWC numpy dicts per view: `img (B, H, W, 3)` in [-1, 1], `true_shape (B, 2) int32`,
`depthmap (B, H, W)`, `camera_pose (B, 4, 4)` cam2world, `camera_intrinsics (B, 3, 3)`,
`pts3d (B, H, W, 3)` world, `valid_mask (B, H, W)` bool.
"""
import numpy as np


def _rotation(rng, max_angle):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _view(rng, cam2world, width, height, plane):
    """One view: depth of the world plane (n . x = d) seen from `cam2world`, and what follows."""
    focal = width * rng.uniform(0.8, 1.2)
    intrinsics = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    u, v = np.meshgrid(np.arange(width), np.arange(height))
    rays_cam = np.stack([(u - width / 2) / focal, (v - height / 2) / focal, np.ones_like(u, float)], -1)
    rays_world = rays_cam @ cam2world[:3, :3].T
    normal, offset = plane
    centre = cam2world[:3, 3]
    # ray x = c + t * r_world, with r_cam's z = 1 so t is the depth
    depth = (offset - normal @ centre) / (rays_world @ normal)
    holes = rng.random((height, width)) < 0.1
    valid = np.isfinite(depth) & (depth > 0.1) & ~holes
    depth = np.where(valid, depth, 0.0)
    pts3d = centre + depth[..., None] * rays_world
    img = np.tanh(np.stack([np.sin(3 * pts3d[..., 0]), np.cos(3 * pts3d[..., 1]),
                            np.sin(2 * pts3d[..., 2] + pts3d[..., 0])], -1))
    return {
        "img": img.astype(np.float32),
        "true_shape": np.array([height, width], np.int32),
        "depthmap": depth.astype(np.float32),
        "camera_pose": cam2world.astype(np.float32),
        "camera_intrinsics": intrinsics.astype(np.float32),
        "pts3d": pts3d.astype(np.float32),
        "valid_mask": valid,
    }


def make_pair(seed, index, width, height):
    """Two views (dicts of numpy arrays) of pair `index`, deterministic in (seed, index, size)."""
    rng = np.random.default_rng([seed, index, width, height])
    normal = np.array([0.0, 0.0, -1.0]) + 0.3 * rng.normal(size=3)
    normal /= np.linalg.norm(normal)
    plane = (normal, -rng.uniform(2.0, 5.0))  # plane in front of the origin, facing it
    views = []
    for baseline in (0.0, rng.uniform(0.2, 0.5)):
        cam2world = np.eye(4)
        cam2world[:3, :3] = _rotation(rng, 0.15)
        cam2world[:3, 3] = np.array([baseline, 0.1 * rng.normal(), 0.1 * rng.normal()])
        # cameras look down +z; the plane sits around z = +d
        views.append(_view(rng, cam2world, width, height, (-normal, -plane[1])))
    return views


class SyntheticPairs:
    """`num_pairs` fixed pairs at `resolutions` ((W, H) list, landscape), in the official batch format."""

    def __init__(self, num_pairs, resolutions, seed=0):
        self.num_pairs = int(num_pairs)
        self.resolutions = [tuple(int(s) for s in r) for r in resolutions]
        self.seed = int(seed)

    def __len__(self):
        return self.num_pairs

    def epoch_plan(self, epoch, global_batch):
        """(order, resolution index per batch) of an epoch, as the official batched sampler draws them."""
        total = (self.num_pairs // global_batch) * global_batch
        rng = np.random.default_rng(epoch + 777)
        order = np.arange(total)
        rng.shuffle(order)
        n_batches = total // global_batch
        feats = rng.integers(len(self.resolutions), size=n_batches)
        return order % self.num_pairs, feats

    def batches_per_epoch(self, global_batch):
        return self.num_pairs // global_batch

    def global_batch(self, epoch, batch_index, global_batch, rows=None):
        """Batch `batch_index` of `epoch`: (view0, view1) numpy dicts; `rows` keeps a slice of it
        (a host's share) without building the other rows."""
        order, feats = self.epoch_plan(epoch, global_batch)
        if not 0 <= batch_index < len(feats):
            raise IndexError(f"batch {batch_index} of epoch {epoch}: an epoch has {len(feats)} batches")
        width, height = self.resolutions[feats[batch_index]]
        indices = order[batch_index * global_batch:(batch_index + 1) * global_batch]
        if rows is not None:
            indices = indices[rows]
        pairs = [make_pair(self.seed, int(i), width, height) for i in indices]
        return tuple({k: np.stack([p[v][k] for p in pairs]) for k in pairs[0][v]} for v in (0, 1))
