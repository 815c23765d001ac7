"""Where training and test batches come from: the synthetic source or the real dataset loaders.

Both give, per epoch, this host's micro-batches `(view0, view1)` (numpy dicts, `B / processes`
rows each, see `dust3r_jax.data.loader` for the fields), resumable at any batch:

    source.num_batches(epoch)               micro-batches per epoch (the same on every host)
    source.host_batches(epoch, start_batch) iterator over this host's rows of each batch

`config.data.source` picks one: 'synthetic' (in memory, `SyntheticPairs`) or 'datasets' (the
`N @ Dataset(...)` mixture strings `train_dataset` / `test_dataset` read by `PairLoader`).
"""
import jax

from dust3r_jax.errors import ConfigError
from dust3r_jax.train.synthetic import SyntheticPairs


def host_rows(global_batch):
    """This process's rows of a global batch: host r takes [r*B, (r+1)*B) (B = global / processes)."""
    count, index = jax.process_count(), jax.process_index()
    if global_batch % count:
        raise ConfigError(f"data.batch_size={global_batch} is not divisible by the {count} processes")
    per_host = global_batch // count
    return slice(index * per_host, (index + 1) * per_host)


class SyntheticSource:
    def __init__(self, pairs: SyntheticPairs, global_batch, shuffle=True):
        self.pairs, self.global_batch, self.shuffle = pairs, int(global_batch), shuffle

    def num_batches(self, epoch=0):
        return self.pairs.batches_per_epoch(self.global_batch)

    def host_batches(self, epoch, start_batch=0):
        rows = host_rows(self.global_batch)
        # test sets are read in a fixed order: the order of epoch 0
        plan_epoch = epoch if self.shuffle else 0
        for b in range(start_batch, self.num_batches(epoch)):
            yield self.pairs.global_batch(plan_epoch, b, self.global_batch, rows)


class DatasetSource:
    """A dataset-mixture string read by the data package's `PairLoader`."""

    def __init__(self, text, global_batch, roots, shuffle, seed):
        from dust3r_jax.data.loader import PairLoader
        from dust3r_jax.data.mixture import parse_dataset

        self.global_batch = int(global_batch)
        per_host = self.global_batch // jax.process_count()
        host_rows(self.global_batch)  # divisibility check
        dataset = parse_dataset(text, roots={name: root for name, root in roots.items() if root})
        self.loader = PairLoader(dataset, per_host, shuffle=shuffle, drop_last=True,
                                 seed=seed if shuffle else None)

    def num_batches(self, epoch=0):
        return self.loader.num_batches(epoch)

    def host_batches(self, epoch, start_batch=0):
        return self.loader.epoch(epoch, start_batch)


def train_source(config):
    data = config.data
    if data.source == "synthetic":
        pairs = SyntheticPairs(data.synthetic.train_pairs, data.synthetic.resolutions, seed=data.synthetic.seed)
        return SyntheticSource(pairs, data.batch_size, shuffle=True)
    if data.source == "datasets":
        return DatasetSource(data.train_dataset, data.batch_size, data.roots, shuffle=True, seed=config.seed)
    raise ConfigError(f"data.source={data.source!r}: expected 'synthetic' or 'datasets'")


def test_sources(config):
    """{name: source} of the test sets; a '+'-joined test string gives one loader per member
    (named by the text before its first '('), as the official trainer does."""
    data = config.data
    if data.source == "synthetic":
        if not data.synthetic.test_pairs:
            return {}
        pairs = SyntheticPairs(data.synthetic.test_pairs, data.synthetic.resolutions[:1],
                               seed=data.synthetic.seed + 1)
        return {"synthetic": SyntheticSource(pairs, data.batch_size, shuffle=False)}
    if not data.test_dataset:
        return {}
    sources = {}
    for part in _split_top_level_plus(data.test_dataset):
        name = part.split("(", 1)[0].split("@")[-1].strip()
        sources[name] = DatasetSource(part, data.batch_size, data.roots, shuffle=False, seed=None)
    return sources


def _split_top_level_plus(text):
    """'A(x) + 1 @ B(y=(1+2))' -> ['A(x)', '1 @ B(y=(1+2))']: '+' outside brackets only."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "+" and depth == 0:
            if current.strip():
                parts.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current.strip())
    return parts
