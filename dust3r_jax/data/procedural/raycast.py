"""Analytic ray casting of the procedural primitives: exact depth, normals and surface coordinates.

World frame: y up, metres. Rays are `origin + t * direction` with directions whose component along
the camera's optical axis is 1, so the hit parameter `t` of a pixel's ray IS that pixel's depth
(z in the camera frame, the DUSt3R convention).

Every primitive is a dict with a `type`:
    box       centre (3,), half (3,) half-sizes, yaw (rotation about y, radians), inside (bool:
              the room, seen from within), texture slot per face (6,) ordered -x,+x,-y,+y,-z,+z
    sphere    centre (3,), radius
    cylinder  base (3,) centre of the bottom disc, radius, height (axis along +y; side and top cap)
    disc      centre (3,), radius: a horizontal disc facing +y (the ground of object scenes)
`hit_primitive` returns, per ray, the hit distance (inf for a miss), the unit normal facing the
ray, 2D surface coordinates in metres (for texturing) and a face index (boxes: 0..5, others 0).
"""
import numpy as np

EPS = 1e-6
_NO_HIT = np.inf


def _rot_y(yaw):
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _safe_inverse(direction):
    """1 / d with zeros replaced by a huge finite value of the same sign (slab tests stay finite)."""
    tiny = np.where(direction >= 0, 1e-12, -1e-12)
    return 1.0 / np.where(np.abs(direction) < 1e-12, tiny, direction)


def hit_box(prim, origin, dirs):
    """Slab test in the box's frame. origin: (3,) world; dirs: (R, 3) world."""
    rot = _rot_y(prim["yaw"])           # box frame -> world
    local_o = (origin - prim["centre"]) @ rot
    local_d = dirs @ rot
    inv = _safe_inverse(local_d)
    half = np.asarray(prim["half"], np.float64)
    t_lo = (-half - local_o) * inv
    t_hi = (half - local_o) * inv
    t_enter_axis = np.minimum(t_lo, t_hi)
    t_exit_axis = np.maximum(t_lo, t_hi)
    t_enter = t_enter_axis.max(axis=1)
    t_exit = t_exit_axis.min(axis=1)
    if prim.get("inside", False):      # the room: the ray leaves through a wall
        t = np.where(t_exit > EPS, t_exit, _NO_HIT)
        axis = t_exit_axis.argmin(axis=1)
    else:
        ok = (t_enter <= t_exit) & (t_enter > EPS)
        t = np.where(ok, t_enter, _NO_HIT)
        axis = t_enter_axis.argmax(axis=1)
    rows = np.arange(len(dirs))
    d_axis = local_d[rows, axis]
    sign = -np.sign(d_axis)            # the normal faces the incoming ray
    normal_local = np.zeros_like(local_d)
    normal_local[rows, axis] = sign
    hit_local = local_o + np.where(np.isfinite(t), t, 0.0)[:, None] * local_d
    # the two coordinates spanning the face, measured from the box corner
    other = np.array([[1, 2], [0, 2], [0, 1]])[axis]
    uv = np.stack([hit_local[rows, other[:, 0]] + half[other[:, 0]],
                   hit_local[rows, other[:, 1]] + half[other[:, 1]]], axis=1)
    # which face: the one the point lies on (+ side when the local coordinate is positive)
    face = 2 * axis + (hit_local[rows, axis] > 0)
    return t, normal_local @ rot.T, uv, face


def hit_sphere(prim, origin, dirs):
    centre, radius = np.asarray(prim["centre"], np.float64), float(prim["radius"])
    oc = origin - centre
    a = np.einsum("ij,ij->i", dirs, dirs)
    b = 2.0 * dirs @ oc
    c = oc @ oc - radius ** 2
    disc = b * b - 4 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t = (-b - root) / (2 * a)
    t = np.where((disc >= 0) & (t > EPS), t, _NO_HIT)
    point = origin + np.where(np.isfinite(t), t, 0.0)[:, None] * dirs - centre
    normal = point / radius
    polar = np.arccos(np.clip(normal[:, 1], -1.0, 1.0))
    azimuth = np.arctan2(normal[:, 2], normal[:, 0])
    uv = np.stack([azimuth * radius, polar * radius], axis=1)
    return t, normal, uv, np.zeros(len(dirs), np.int64)


def hit_cylinder(prim, origin, dirs):
    base, radius, height = np.asarray(prim["base"], np.float64), float(prim["radius"]), float(prim["height"])
    o = origin - base
    # side: |(o + t d)_xz| = r
    a = dirs[:, 0] ** 2 + dirs[:, 2] ** 2
    b = 2.0 * (o[0] * dirs[:, 0] + o[2] * dirs[:, 2])
    c = o[0] ** 2 + o[2] ** 2 - radius ** 2
    disc = b * b - 4 * a * c
    a_safe = np.where(a < 1e-12, 1e-12, a)
    t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a_safe)
    y_side = o[1] + t_side * dirs[:, 1]
    t_side = np.where((disc >= 0) & (a > 1e-12) & (t_side > EPS) & (y_side >= 0) & (y_side <= height),
                      t_side, _NO_HIT)
    # top cap: y = height, inside the radius
    dy = np.where(np.abs(dirs[:, 1]) < 1e-12, 1e-12, dirs[:, 1])
    t_cap = (height - o[1]) / dy
    cap_x, cap_z = o[0] + t_cap * dirs[:, 0], o[2] + t_cap * dirs[:, 2]
    t_cap = np.where((t_cap > EPS) & (cap_x ** 2 + cap_z ** 2 <= radius ** 2), t_cap, _NO_HIT)
    on_cap = t_cap < t_side
    t = np.minimum(t_side, t_cap)
    point = o + np.where(np.isfinite(t), t, 0.0)[:, None] * dirs
    side_normal = np.stack([point[:, 0] / radius, np.zeros(len(dirs)), point[:, 2] / radius], axis=1)
    normal = np.where(on_cap[:, None], np.array([0.0, 1.0, 0.0]), side_normal)
    side_uv = np.stack([np.arctan2(point[:, 2], point[:, 0]) * radius, point[:, 1]], axis=1)
    uv = np.where(on_cap[:, None], point[:, [0, 2]], side_uv)
    return t, normal, uv, on_cap.astype(np.int64)


def hit_disc(prim, origin, dirs):
    centre, radius = np.asarray(prim["centre"], np.float64), float(prim["radius"])
    dy = np.where(np.abs(dirs[:, 1]) < 1e-12, 1e-12, dirs[:, 1])
    t = (centre[1] - origin[1]) / dy
    point = origin + t[:, None] * dirs - centre
    inside = (t > EPS) & (point[:, 0] ** 2 + point[:, 2] ** 2 <= radius ** 2)
    t = np.where(inside, t, _NO_HIT)
    normal = np.tile(np.array([0.0, 1.0, 0.0]), (len(dirs), 1))
    normal[dirs[:, 1] > 0] *= -1
    return t, normal, point[:, [0, 2]], np.zeros(len(dirs), np.int64)


HIT_FUNCTIONS = {"box": hit_box, "sphere": hit_sphere, "cylinder": hit_cylinder, "disc": hit_disc}


def cast(primitives, origin, dirs):
    """Nearest hit over all primitives.

    origin: (3,) world; dirs: (R, 3) world directions (camera-z component 1).
    Returns t (R,) (inf on a miss), normal (R, 3) world unit normals facing the ray, uv (R, 2)
    metres, prim (R,) int index into `primitives` (-1 on a miss), face (R,) int.
    """
    count = len(dirs)
    best_t = np.full(count, _NO_HIT)
    normal, uv = np.zeros((count, 3)), np.zeros((count, 2))
    prim_index, face = np.full(count, -1, np.int64), np.zeros(count, np.int64)
    for index, prim in enumerate(primitives):
        t, n, coords, f = HIT_FUNCTIONS[prim["type"]](prim, origin, dirs)
        closer = t < best_t
        best_t = np.where(closer, t, best_t)
        normal[closer], uv[closer], face[closer] = n[closer], coords[closer], f[closer]
        prim_index[closer] = index
    return best_t, normal, uv, prim_index, face
