"""Batches of view pairs: the official aspect-ratio sampler, collate to NHWC, hosts and grain.

Sampler (`BatchedRandomSampler`, dust3r/datasets/base/batched_sampler.py), per epoch `e`, for `N` pairs, batch size `B` and `W` processes:
    total   = floor(N / (B * W)) * B * W                      (drop_last)
    g       = default_rng(e + 777);  order = g.shuffle(arange(total))
    feat    = g.integers(n_resolutions, size=ceil(total / B)), each repeated B times
    rank r yields (order[k], feat[k]) for k in [r * P, (r + 1) * P),  P = B * ceil(total / (W * B))
so one batch holds one aspect ratio. `sampler_order` is exactly that.

Hosts: a jax global array needs every host's shard of a step to have the same shape, while the
official sampler gives each rank its own aspect ratio per step. `PairLoader` therefore treats the
GLOBAL batch (B per host times W hosts) as the sampler's batch: it runs the official sampler with
batch size `B * W` and one rank, and host r takes rows [r*B, (r+1)*B) of every global batch. With
one host (W = 1) this is exactly the official order; each host only reads its own rows.

Collate: a batch is `(view1, view2)`, dicts of numpy arrays (images NHWC):
    img (B,H,W,3) float32, depthmap (B,H,W) float32, pts3d (B,H,W,3) float32, valid_mask (B,H,W)
    bool, camera_pose (B,4,4) float32, camera_intrinsics (B,3,3) float32, true_shape (B,2) int32,
    idx (B,3) int64 (idx, ar_idx, v), rng (B,) int64, dataset/label/instance lists of B str.
(The official collate stores `idx` as a list of 3 tensors of shape (B,): transpose to compare.)

Random numbers of unseeded datasets (the published training sets): `stream_seed` reproduces the
official `num_workers=0` behaviour (one generator per leaf, created at its first call from that
seed and continued across calls and epochs: deterministic with one reader thread only; the
official multi-worker loader instead restarts per-worker streams from fresh seeds every epoch,
which is not reproducible at all). `seed` makes every view a function of (seed, epoch, index),
whatever the number of reader threads, so a resumed run reads exactly what an uninterrupted one
reads: use it for training. With neither, generators start from fresh entropy. Seeded datasets
(`seed=777`, the test sets) ignore both.
"""
import math

import numpy as np

from dust3r_jax.data.mixture import EPOCH_SEED_OFFSET
from dust3r_jax.errors import ConfigError

_STACKED = ("img", "depthmap", "pts3d", "valid_mask", "camera_pose", "camera_intrinsics", "true_shape")
_STRINGS = ("dataset", "label", "instance")


def sampler_order(num_pairs, batch_size, num_resolutions, epoch, world_size=1, rank=0, drop_last=True):
    """The official batched random sampler: the `(idx, ar_idx)` list rank `rank` yields in `epoch`.

    Returns an int64 array (P, 2). `drop_last=False` is only defined for one process.
    """
    if batch_size <= 0 or world_size <= 0 or not 0 <= rank < world_size:
        raise ConfigError(f"sampler: batch_size={batch_size}, world_size={world_size}, rank={rank} are invalid")
    if drop_last:
        total = (num_pairs // (batch_size * world_size)) * batch_size * world_size
    else:
        if world_size != 1:
            raise ConfigError("sampler: drop_last=False needs world_size=1 (as the official sampler)")
        total = num_pairs
    rng = np.random.default_rng(epoch + EPOCH_SEED_OFFSET)
    order = np.arange(total)
    rng.shuffle(order)
    n_batches = (total + batch_size - 1) // batch_size
    feat = rng.integers(num_resolutions, size=n_batches)
    feat = np.repeat(feat, batch_size)[:total]
    per_rank = batch_size * math.ceil(total / (world_size * batch_size))
    block = slice(rank * per_rank, (rank + 1) * per_rank)
    return np.stack([order[block], feat[block]], axis=1).astype(np.int64)


def sequential_order(num_pairs, world_size=1, rank=0):
    """Test loaders: plain indices in order; several processes split them as PyTorch's
    DistributedSampler(shuffle=False) does (padded with the first indices, rank r takes r::W)."""
    if world_size == 1:
        return np.arange(num_pairs)
    total = math.ceil(num_pairs / world_size) * world_size
    indices = np.concatenate([np.arange(num_pairs)] * (1 + total // max(num_pairs, 1)))[:total]
    return indices[rank:total:world_size]


def collate(pairs):
    """A list of B pairs `[view0, view1]` -> `(view1_batch, view2_batch)` (see module docstring)."""
    batch = []
    for v in range(2):
        views = [pair[v] for pair in pairs]
        out = {key: np.stack([view[key] for view in views]) for key in _STACKED}
        out["idx"] = np.array([view["idx"] for view in views], dtype=np.int64).reshape(len(views), 3)
        out["rng"] = np.array([view["rng"] for view in views], dtype=np.int64)
        for key in _STRINGS:
            out[key] = [str(view[key]) for view in views]
        batch.append(out)
    return tuple(batch)


def host_shard():
    """(process_count, process_index) of this JAX process."""
    import jax

    return jax.process_count(), jax.process_index()


def to_global_arrays(batch, sharding, batch_axis=0):
    """This host's rows of a batch -> global `jax.Array`s: every process passes its own rows.

    batch: a pytree of numpy arrays (e.g. some keys of a collated view, or {'view0': {key: (accum,
    B, ...)}, ...}) holding this host's B rows along `batch_axis`; pick the keys first, strings
    stay on the host. sharding: one `jax.sharding.Sharding` (e.g. `NamedSharding(mesh,
    P(('data', 'fsdp')))`) or a tree of them like `batch`. The global batch is B * process_count.
    """
    import jax

    def one(rows, rows_sharding):
        rows = np.asarray(rows)
        shape = list(rows.shape)
        shape[batch_axis] *= jax.process_count()
        return jax.make_array_from_process_local_data(rows_sharding, rows, tuple(shape))

    if isinstance(sharding, jax.sharding.Sharding):
        return jax.tree.map(lambda rows: one(rows, sharding), batch)
    return jax.tree.map(one, batch, sharding)


class PairLoader:
    """Batches of one dataset (a leaf or a mixture) for this host, epoch by epoch.

    dataset: anything indexable by `(idx, ar_idx)` with `resolutions`, `set_epoch`;
    batch_size: pairs per host per step (B); shuffle: training order (the sampler above) or the
    sequential test order; num_threads: grain reader threads (0 = read in this thread; the
    decoders hold the GIL part of the time); num_workers: grain reader processes (real datasets
    need several per accelerator, as the official loader's workers; needs `seed` for determinism);
    prefetch: batches read ahead;
    seed / stream_seed: how unseeded datasets draw (module docstring); world_size / rank: default
    to JAX's process count / index.
    """

    def __init__(self, dataset, batch_size, *, shuffle=True, drop_last=None, num_threads=0, num_workers=0,
                 prefetch=4, seed=None, stream_seed=None, world_size=None, rank=None):
        if seed is not None and stream_seed is not None:
            raise ConfigError("PairLoader: give seed (index-seeded) or stream_seed (official stream), not both")
        if world_size is None or rank is None:
            world_size, rank = host_shard()
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = shuffle if drop_last is None else drop_last
        self.num_threads = int(num_threads)
        self.num_workers = int(num_workers)
        if self.num_workers > 0 and seed is None and stream_seed is not None:
            raise ConfigError("PairLoader: num_workers > 0 needs seed= (a stream cannot be split over processes)")
        self.prefetch = int(prefetch)
        self.seed, self.stream_seed = seed, stream_seed
        self.world_size, self.rank = int(world_size), int(rank)
        self._stream_started = False

    def order(self, epoch):
        """This host's `(idx, ar_idx)` list of `epoch`, int64 (n, 2), batch after batch."""
        if not self.shuffle:
            indices = sequential_order(len(self.dataset), self.world_size, self.rank)
            return np.stack([indices, np.zeros_like(indices)], axis=1)
        global_batch = self.batch_size * self.world_size
        order = sampler_order(len(self.dataset), global_batch, len(self.dataset.resolutions), epoch,
                              drop_last=self.drop_last or self.world_size > 1)
        if self.world_size > 1:  # host r: rows [r*B, (r+1)*B) of every global batch
            order = order.reshape(-1, self.world_size, self.batch_size, 2)[:, self.rank]
        return order.reshape(-1, 2)

    def num_batches(self, epoch=0):
        n = len(self.order(epoch))
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __len__(self):
        return self.num_batches(0)

    def prepare_epoch(self, epoch):
        """What the official loop does before an epoch: set_epoch, plus our RNG policy."""
        self.dataset.set_epoch(epoch)
        if self.seed is not None:
            epoch_seed = int(np.random.SeedSequence((int(self.seed), int(epoch))).generate_state(1)[0])
            self.dataset.set_index_seed(epoch_seed)
        elif self.stream_seed is not None and not self._stream_started:
            # once: like the official main-process loader, the streams continue across epochs
            self.dataset.set_stream_seed(self.stream_seed)
            self._stream_started = True

    def _fetch(self, entry):
        idx, ar_idx = int(entry[0]), int(entry[1])
        return self.dataset[idx] if not self.shuffle else self.dataset[idx, ar_idx]

    def grain_dataset(self, epoch, start_batch=0):
        """A `grain.MapDataset` of this host's collated batches of `epoch`, from `start_batch`."""
        import grain

        self.prepare_epoch(epoch)
        order = self.order(epoch)
        batches = (grain.MapDataset.source([tuple(row) for row in order.tolist()])
                   .map(self._fetch)
                   .batch(self.batch_size, drop_remainder=self.drop_last, batch_fn=collate))
        return batches[start_batch:]

    def epoch(self, epoch, start_batch=0):
        """Iterate this host's batches of `epoch` (from `start_batch`, to resume mid-epoch)."""
        import grain

        batches = self.grain_dataset(epoch, start_batch)
        if self.num_workers > 0:  # processes: each builds whole batches, output keeps the order
            from absl import flags

            if not flags.FLAGS.is_parsed():  # grain reads absl flags; a library must not parse argv
                flags.FLAGS.mark_as_parsed()
            options = grain.ReadOptions(num_threads=max(self.num_threads, 1), prefetch_buffer_size=self.prefetch)
            workers = grain.MultiprocessingOptions(num_workers=self.num_workers,
                                                   per_worker_buffer_size=self.prefetch)
            # batches travel pickled: grain's shared-memory arrays leak warnings at interpreter exit
            no_shm = grain.experimental.DatasetOptions(min_shm_size=2**62)
            batches = grain.experimental.WithOptionsIterDataset(batches.to_iter_dataset(options), no_shm)
            return iter(batches.mp_prefetch(workers))
        if self.num_threads <= 0:  # in this thread, in order (iter() on a MapDataset would use threads)
            return (batches[i] for i in range(len(batches)))
        options = grain.ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=self.prefetch)
        return iter(batches.to_iter_dataset(options))
