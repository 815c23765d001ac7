"""Training data: the nine official datasets, the official view pipeline, TFDS + grain loading.

- `dust3r_jax.data.views`: crop/resize, intrinsics, pts3d, transposition, image transforms;
- `dust3r_jax.data.base`: `ViewDataset`, the base of every source (seeding, fields of a view);
- `dust3r_jax.data.files`: the stores (folder or TFDS records) and file decoders;
- `dust3r_jax.data.sources`: the nine datasets by name (`get_source('Co3d')`);
- `dust3r_jax.data.mixture`: `N @ D`, `k * D`, `A + B` and `parse_dataset(string)`;
- `dust3r_jax.data.loader`: aspect-ratio batched sampler, collate to NHWC, per-host shards, grain;
- `dust3r_jax.data.tfds_builder`: pack a preprocessed folder into array_record and read it back.
"""
