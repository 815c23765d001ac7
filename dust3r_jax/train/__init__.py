"""Training DUSt3R: optimiser and schedule, mesh sharding, train/eval steps, orbax checkpoints, loop.

- `optimizer`: AdamW with the official parameter groups, warm-up + half-cycle cosine, freezing;
- `sharding`: the (`data`, `fsdp`, `tensor`) mesh and the logical-axis rules table;
- `state`: the train state pytree and its sharded initialisation;
- `step`: the jitted train step (gradient accumulation, symmetrised batch) and eval step;
- `checkpoint`: orbax `CheckpointManager` (async, keep-N, best-by-eval) with exact resume;
- `synthetic`: an in-memory batch source in the training batch format (tests, benchmarks);
- `sources`: synthetic or real (dataset-mixture strings) batches, this host's rows, resumable;
- `defaults`: every training-config key and its default (the official recipe);
- `config_overrides`: `--config configs/X.py --config.a.b=value`, parsed by ml_collections' config_flags;
- `metrics`: stdout + JSON-lines logging;
- `loop`: `train(config, workdir)` and `evaluate(config, workdir)`.
"""
