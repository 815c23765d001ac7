"""Procedural multi-view scenes with exact geometry, each a function of one integer seed.

Two kinds, half and half:
    room     a box room seen from inside (walls, floor, ceiling) with furniture-like boxes,
             cylinders and spheres; cameras stand in the room looking at a common area;
    objects  a few objects on a ground disc; cameras orbit them (an arc of 60-300 degrees) at
             varied elevations, the sky behind them is invalid depth (as masked backgrounds are).
Every view has its own horizontal field of view (45-80 degrees) and a little roll.

    scene = make_scene(seed, num_views=8)
    view = render_view(scene, v, width=160, height=120)   # image, depth, valid, intrinsics, cam2world

Frames: world y up, metres; cameras OpenCV (x right, y down, z forward), `cam2world` (4, 4);
intrinsics with pixel centres at integer coordinates and the principal point at (W/2, H/2).
"""
import numpy as np

from dust3r_jax.data.procedural import raycast, textures

ROOM, OBJECTS = "room", "objects"


def look_at(eye, target, roll=0.0):
    """cam2world (4, 4) of an OpenCV camera at `eye` looking at `target` (world y up), rolled."""
    forward = target - eye
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    if np.linalg.norm(right) < 1e-6:  # looking straight up or down
        right = np.array([1.0, 0.0, 0.0])
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    cam2world = np.eye(4)
    cam2world[:3, :3] = np.stack([right, down, forward], axis=1)
    cam2world[:3, 3] = eye
    return cam2world


def _material(rng, texture_count, faces=1):
    """Texture slots (one per face) into the scene's texture list, and a scale/offset per face."""
    return dict(texture=rng.integers(texture_count, size=faces),
                texels_per_metre=rng.uniform(30.0, 160.0, size=faces),
                offset=rng.uniform(0.0, 128.0, size=(faces, 2)))


def _bounding_radius(prim):
    if prim["type"] == "box":
        return float(np.linalg.norm(prim["half"]))
    if prim["type"] == "sphere":
        return float(prim["radius"])
    return float(np.hypot(prim["radius"], prim["height"] / 2))


def _prim_centre(prim):
    if prim["type"] == "cylinder":
        return prim["base"] + np.array([0.0, prim["height"] / 2, 0.0])
    return prim["centre"]


def _blocks_a_camera(prim, eyes, targets, margin=0.15):
    """True when the object's bounding sphere contains a camera or hides most of its line of sight."""
    centre, radius = _prim_centre(prim), _bounding_radius(prim) + margin
    for eye, target in zip(eyes, targets):
        segment = (target - eye) * 0.7  # the target itself may sit on an object
        along = np.clip(np.dot(centre - eye, segment) / np.dot(segment, segment), 0.0, 1.0)
        if np.linalg.norm(eye + along * segment - centre) < radius:
            return True
    return False


def _holds_a_camera(prim, eyes, margin):
    centre, radius = _prim_centre(prim), _bounding_radius(prim) + margin
    return any(np.linalg.norm(eye - centre) < radius for eye in eyes)


def _random_object(rng, kind, xz, floor_y, texture_count, size=1.0):
    x, z = xz
    if kind == "box":
        half = rng.uniform([0.15, 0.15, 0.15], [0.8, 1.0, 0.8]) * size
        return dict(type="box", centre=np.array([x, floor_y + half[1], z]), half=half,
                    yaw=rng.uniform(0, np.pi), inside=False, **_material(rng, texture_count, 6))
    if kind == "cylinder":
        radius, height = rng.uniform(0.1, 0.45) * size, rng.uniform(0.3, 2.0) * size
        return dict(type="cylinder", base=np.array([x, floor_y, z]), radius=radius, height=height,
                    **_material(rng, texture_count, 2))
    radius = rng.uniform(0.15, 0.55) * size
    return dict(type="sphere", centre=np.array([x, floor_y + radius, z]), radius=radius,
                **_material(rng, texture_count))


def _room(rng, num_views, texture_count):
    width, depth, height = rng.uniform(4.0, 8.0), rng.uniform(4.0, 8.0), rng.uniform(2.4, 3.4)
    room = dict(type="box", centre=np.array([0.0, height / 2, 0.0]),
                half=np.array([width / 2, height / 2, depth / 2]), yaw=0.0, inside=True,
                **_material(rng, texture_count, 6))
    target = np.array([rng.uniform(-width / 4, width / 4), rng.uniform(0.4, 1.2), rng.uniform(-depth / 4, depth / 4)])
    base_azimuth, spread = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(15.0, 60.0))
    margin = 0.4
    eyes, targets = [], []
    for _ in range(num_views):
        azimuth = base_azimuth + rng.uniform(-spread, spread)
        distance = rng.uniform(1.5, 3.5)
        eye = target + distance * np.array([np.sin(azimuth), 0.0, np.cos(azimuth)])
        eye[1] = rng.uniform(0.9, min(2.0, height - margin))
        eye[0] = np.clip(eye[0], -width / 2 + margin, width / 2 - margin)
        eye[2] = np.clip(eye[2], -depth / 2 + margin, depth / 2 - margin)
        eyes.append(eye)
        targets.append(target + rng.normal(0.0, 0.25, size=3))
    primitives = [room]
    count = int(rng.integers(4, 10))
    for _ in range(count * 4):  # rejection sampling: objects never hide the shared view
        if len(primitives) > count:
            break
        kind = str(rng.choice(["box", "box", "cylinder", "sphere"]))
        xz = rng.uniform([-width / 2 + 0.3, -depth / 2 + 0.3], [width / 2 - 0.3, depth / 2 - 0.3])
        prim = _random_object(rng, kind, xz, 0.0, texture_count)
        if not _blocks_a_camera(prim, eyes, targets):
            primitives.append(prim)
    return primitives, eyes, targets


def _objects(rng, num_views, texture_count):
    primitives = [dict(type="disc", centre=np.zeros(3), radius=rng.uniform(4.0, 9.0),
                       **_material(rng, texture_count))]
    for _ in range(int(rng.integers(1, 6))):
        radius, angle = rng.uniform(0.0, 1.2), rng.uniform(0, 2 * np.pi)
        kind = str(rng.choice(["box", "cylinder", "sphere"]))
        primitives.append(_random_object(rng, kind, (radius * np.cos(angle), radius * np.sin(angle)), 0.0,
                                         texture_count, size=rng.uniform(0.6, 1.4)))
    for _ in range(int(rng.integers(0, 4))):  # far blocks on the horizon
        radius, angle = rng.uniform(4.5, 8.0), rng.uniform(0, 2 * np.pi)
        prim = _random_object(rng, "box", (radius * np.cos(angle), radius * np.sin(angle)), 0.0,
                              texture_count, size=rng.uniform(1.5, 3.0))
        primitives.append(prim)
    arc, start = np.radians(rng.uniform(60.0, 300.0)), rng.uniform(0, 2 * np.pi)
    orbit = rng.uniform(2.5, 4.5)
    eyes, targets = [], []
    for v in range(num_views):
        azimuth = start + arc * (v + rng.uniform(-0.3, 0.3)) / max(num_views - 1, 1)
        elevation = np.radians(rng.uniform(10.0, 50.0))
        distance = orbit * rng.uniform(0.85, 1.15)
        eyes.append(distance * np.array([np.cos(elevation) * np.cos(azimuth), np.sin(elevation),
                                         np.cos(elevation) * np.sin(azimuth)]))
        targets.append(np.array([0.0, rng.uniform(0.2, 0.6), 0.0]) + rng.normal(0.0, 0.2, size=3))
    # drop objects that would hold a camera or fill its view
    primitives = [p for p in primitives if p["type"] == "disc" or not _holds_a_camera(p, eyes, 0.3)]
    return primitives, eyes, targets


def make_scene(seed, num_views=8, kind=None):
    """The scene of `seed`: a dict of primitives, textures, lighting and `num_views` cameras.

    Each camera is (hfov_degrees, cam2world (4, 4)); the intrinsics follow from the render size.
    """
    rng = np.random.default_rng([int(seed), 0x5CE4E])
    kind = kind or (ROOM if rng.random() < 0.5 else OBJECTS)
    texture_count = int(rng.integers(4, 9))
    texture_list = [textures.draw_texture(rng) for _ in range(texture_count)]
    if kind == ROOM:
        primitives, eyes, targets = _room(rng, num_views, texture_count)
    elif kind == OBJECTS:
        primitives, eyes, targets = _objects(rng, num_views, texture_count)
    else:
        raise ValueError(f"scene kind {kind!r}: expected {ROOM!r} or {OBJECTS!r}")
    cameras = []
    for eye, target in zip(eyes, targets):
        roll = np.radians(rng.uniform(-6.0, 6.0))
        cameras.append((float(rng.uniform(45.0, 80.0)), look_at(np.asarray(eye, np.float64), target, roll)))
    light = np.array([rng.uniform(-1, 1), rng.uniform(0.6, 1.6), rng.uniform(-1, 1)])
    return dict(seed=int(seed), kind=kind, primitives=primitives, textures=texture_list, cameras=cameras,
                light=light / np.linalg.norm(light), ambient=float(rng.uniform(0.35, 0.6)),
                sky=(textures.random_colour(rng, 0.5, 1.0), textures.random_colour(rng, 0.2, 0.9)),
                noise_seed=int(rng.integers(2 ** 31)))


def intrinsics_for(hfov_degrees, width, height):
    """(3, 3) OpenCV intrinsics: square pixels, principal point at the image centre."""
    focal = (width / 2) / np.tan(np.radians(hfov_degrees) / 2)
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def pixel_rays(intrinsics, cam2world, width, height):
    """World directions (H*W, 3) through the pixel centres, scaled so that their camera z is 1."""
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    cam = np.stack([(u - intrinsics[0, 2]) / intrinsics[0, 0], (v - intrinsics[1, 2]) / intrinsics[1, 1],
                    np.ones_like(u)], axis=-1).reshape(-1, 3)
    return cam @ cam2world[:3, :3].T


def _shade(scene, hit, dirs, height, width):
    t, normal, uv, prim_index, face = hit
    colour = np.zeros((len(t), 3))
    for index, prim in enumerate(scene["primitives"]):
        rows = np.flatnonzero(prim_index == index)
        if rows.size == 0:
            continue
        slots = face[rows] if len(prim["texture"]) > 1 else np.zeros(rows.size, np.int64)
        for slot in np.unique(slots):
            sel = rows[slots == slot]
            texture = scene["textures"][int(prim["texture"][slot])]
            colour[sel] = textures.sample(texture, uv[sel], prim["texels_per_metre"][slot], prim["offset"][slot])
    lambert = np.clip(normal @ scene["light"], 0.0, 1.0)
    shading = scene["ambient"] + (1.0 - scene["ambient"]) * lambert
    colour *= shading[:, None]
    # sky: a vertical gradient by the ray's elevation
    missed = prim_index < 0
    if missed.any():
        up = dirs[missed, 1] / np.linalg.norm(dirs[missed], axis=1)
        mix = np.clip(0.5 + up, 0.0, 1.0)[:, None]
        colour[missed] = scene["sky"][0] * mix + scene["sky"][1] * (1 - mix)
    return colour.reshape(height, width, 3)


def render_view(scene, view_index, width=160, height=120):
    """One view of `scene`: exact depth from the centre ray of each pixel.

    Returns dict(image (H, W, 3) uint8, depth (H, W) float32 (0 where invalid), valid (H, W) bool,
    intrinsics (3, 3) float32, cam2world (4, 4) float32).
    """
    hfov, cam2world = scene["cameras"][view_index]
    intrinsics = intrinsics_for(hfov, width, height)
    dirs = pixel_rays(intrinsics, cam2world, width, height)
    hit = raycast.cast(scene["primitives"], cam2world[:3, 3], dirs)
    t = hit[0]
    valid = np.isfinite(t)
    depth = np.where(valid, t, 0.0).reshape(height, width)
    colour = _shade(scene, hit, dirs, height, width)
    noise = np.random.default_rng([scene["noise_seed"], view_index]).normal(0.0, 0.01, colour.shape)
    image = np.clip(np.round((colour + noise) * 255.0), 0, 255).astype(np.uint8)
    return dict(image=image, depth=depth.astype(np.float32), valid=valid.reshape(height, width),
                intrinsics=intrinsics.astype(np.float32), cam2world=cam2world.astype(np.float32))
