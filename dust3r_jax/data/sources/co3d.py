"""Co3d (v2, official preprocessing): object-centric sequences, pairs of nearby frames.

Layout under ROOT (datasets_preprocess/preprocess_co3d.py):
    selected_seqs_{split}.json                      {category: {sequence: [frame numbers]}}
    <cat>/<seq>/images/frameNNNNNN.jpg              RGB
    <cat>/<seq>/images/frameNNNNNN.npz              camera_intrinsics (3,3) OpenCV, camera_pose
                                                    (4,4) cam2world, maximum_depth ()
    <cat>/<seq>/depths/frameNNNNNN.jpg.geometric.png  uint16, depth = png / 65535 * max_depth
    <cat>/<seq>/masks/frameNNNNNN.png               uint8 object mask

A pair index is `sequence * 495 + k`, k indexing the 495 frame-position pairs (i, j), i < j < 100,
j - i in {5, ..., 30}. Each call jitters both positions by U{-4..4} (j first) and clamps them to
the sequence's frame list (the "pool"). A frame whose crop has no valid depth is flagged invalid
for this sequence and resolution, and later calls walk past flagged frames in a random direction:
that state lives in the dataset object (`Co3d._get_views`'s invalidation cache), as in the official class. Under the loader's
index-seeded mode (`set_index_seed`), where views must not depend on call history, the flags
live for one call only.
"""
import numpy as np

from dust3r_jax.data.base import ViewDataset
from dust3r_jax.data.files import read_image, read_json, read_npz, read_png_array
from dust3r_jax.errors import ConfigError, InputError

# the 495 position pairs, lexicographic
POSITION_PAIRS = [(i, j) for i in range(100) for j in range(i + 1, 100) if j - i in (5, 10, 15, 20, 25, 30)]


def parse_mask_bg(mask_bg):
    if mask_bg not in (True, False, "rand"):
        raise ConfigError(f"mask_bg: {mask_bg!r}, expected True, False or 'rand'")
    return mask_bg


class Co3d(ViewDataset):
    """`Co3d(mask_bg=True, split, ROOT, resolution, aug_crop, transform, seed)`."""

    dataset_name = "Co3d_v2"
    splits = ("train", "test")

    def __init__(self, *, mask_bg=True, **kwargs):
        super().__init__(**kwargs)
        if self.split not in self.splits:
            raise ConfigError(f"{type(self).__name__}: split {self.split!r}, expected one of {self.splits}")
        self.mask_bg = parse_mask_bg(mask_bg)
        self.sequences = self.list_sequences(self.store, self.split)
        # (sequence index, resolution) -> flags over the pool positions
        self.invalid = {}

    @classmethod
    def list_sequences(cls, store, split):
        """[(category, sequence, [frame ids])] in JSON order, empty categories dropped."""
        selection = read_json(store, f"selected_seqs_{split}.json")
        if not isinstance(selection, dict):
            raise InputError(f"{store.describe(f'selected_seqs_{split}.json')}: expected a JSON object")
        return [(category, sequence, list(frames))
                for category, seqs in selection.items() if seqs for sequence, frames in seqs.items()]

    # -- file names (WildRGBD overrides) ------------------------------------------------------
    def frame_paths(self, category, sequence, frame):
        """Relative paths of (image, metadata npz, depth, mask) of one frame."""
        base = f"{category}/{sequence}"
        return (f"{base}/images/frame{frame:06d}.jpg", f"{base}/images/frame{frame:06d}.npz",
                f"{base}/depths/frame{frame:06d}.jpg.geometric.png", f"{base}/masks/frame{frame:06d}.png")

    def read_depth(self, depth_path, metadata):
        depth = read_png_array(self.store, depth_path).astype(np.float32) / 65535
        return depth * np.nan_to_num(metadata["maximum_depth"])

    @classmethod
    def files_to_pack(cls, store, split):
        """Every file a dataset of this split reads (what the TFDS builder stores)."""
        paths = [f"selected_seqs_{split}.json"]
        for category, sequence, frames in cls.list_sequences(store, split):
            for frame in frames:
                paths.extend(cls.frame_paths(cls, category, sequence, frame))
        return paths

    # -- the pair logic -------------------------------------------------------------------------
    def __len__(self):
        return len(self.sequences) * len(POSITION_PAIRS)

    def _read_frame(self, category, sequence, frame, mask_bg):
        image_path, meta_path, depth_path, mask_path = self.frame_paths(category, sequence, frame)
        metadata = read_npz(self.store, meta_path)
        for key in ("camera_pose", "camera_intrinsics"):
            if key not in metadata:
                raise InputError(f"{self.store.describe(meta_path)}: no array {key!r}")
        pose = metadata["camera_pose"].astype(np.float32)
        intrinsics = metadata["camera_intrinsics"].astype(np.float32)
        image = read_image(self.store, image_path)
        depth = self.read_depth(depth_path, metadata)
        if mask_bg:
            mask = read_png_array(self.store, mask_path).astype(np.float32)
            depth = depth * ((mask / 255.0) > 0.1)
        if depth.shape != (image.size[1], image.size[0]):
            raise InputError(f"{self.store.describe(depth_path)}: depth {depth.shape} does not match the image "
                             f"{image.size[1]}x{image.size[0]}")
        if not np.isfinite(depth).all():
            raise InputError(f"{self.store.describe(depth_path)}: depth has NaN or infinite values")
        return image, depth, pose, intrinsics, image_path

    def _get_views(self, idx, resolution, rng):
        seq_idx, pair_idx = divmod(idx, len(POSITION_PAIRS))
        category, sequence, pool = self.sequences[seq_idx]
        pos_i, pos_j = POSITION_PAIRS[pair_idx]
        mask_bg = self.mask_bg if self.mask_bg != "rand" else bool(rng.integers(2))
        last = len(pool) - 1
        jittered_j = max(0, min(pos_j + int(rng.integers(-4, 5)), last))  # j is drawn first
        jittered_i = max(0, min(pos_i + int(rng.integers(-4, 5)), last))
        if self.index_seed is None:  # official: flags persist in the object, views depend on history
            flags = self.invalid.setdefault((seq_idx, tuple(resolution)), [False] * len(pool))
        else:  # index-seeded reading: a view must be a function of its index alone (threads, resume)
            flags = [False] * len(pool)

        views = []
        todo = [jittered_j, jittered_i]  # popped from the end: view 0 = position i
        while todo:
            position = todo.pop()
            if flags[position]:
                if all(flags):
                    raise InputError(f"{self.store.describe(f'{category}/{sequence}')}: no frame of this "
                                     f"sequence has valid depth at resolution {resolution}")
                step = 1 if rng.integers(2) else -1
                while flags[position]:
                    position = (position + step) % len(pool)
            image, depth, pose, intrinsics, image_path = self._read_frame(category, sequence, pool[position], mask_bg)
            image, depth, intrinsics = self._crop_resize_if_necessary(
                image, depth, intrinsics, resolution, rng, info=self.store.describe(image_path))
            if not (depth > 0.0).any():  # nothing to learn from: flag it and draw again
                flags[position] = True
                todo.append(position)
                continue
            views.append(dict(img=image, depthmap=depth, camera_pose=pose, camera_intrinsics=intrinsics,
                              dataset=self.dataset_name, label=f"{category}/{sequence}",
                              instance=image_path.rsplit("/", 1)[-1]))
        return views
