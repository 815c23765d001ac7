"""Orbax checkpoints of a training run: async, keep-N latest, and the best by eval loss.

Layout under `workdir`:
  checkpoints/<step>/state   the TrainState (params, optimiser state, step, RNG), sharded arrays
  checkpoints/<step>/meta    JSON: data position (epoch, batch in epoch), best eval loss so far
  best/<step>/...            the same items for the checkpoint with the lowest eval loss

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a run
killed during a save leaves no checkpoint that `latest_step` would pick; resume restores the
last complete one onto the shardings of a freshly built state.
"""
import orbax.checkpoint as ocp

from dust3r_jax.errors import CheckpointError


def _manager(directory, keep, async_save, best):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        enable_async_checkpointing=async_save,
        best_fn=(lambda metrics: metrics["eval_loss"]) if best else None,
        best_mode="min",
        keep_checkpoints_without_metrics=not best,
        cleanup_tmp_directories=True,
        create=True,
        # multi-host saves synchronise on barriers named by step: the two managers may save the
        # same step at once, so their barrier names need different prefixes
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            barrier_sync_key_prefix="best" if best else "latest"),
    )
    return ocp.CheckpointManager(directory, item_names=("state", "meta"), options=options)


class RunCheckpoints:
    """The latest-N and best-by-eval checkpoint managers of one run directory."""

    def __init__(self, workdir, keep=2, async_save=True):
        from pathlib import Path

        workdir = Path(workdir).absolute()
        self.latest = _manager(workdir / "checkpoints", keep, async_save, best=False)
        self.best = _manager(workdir / "best", 1, async_save, best=True)

    def latest_step(self):
        return self.latest.latest_step()

    def save(self, step, state, meta, force=False):
        """Starts an (async) save of `state` and the JSON-able `meta` dict at `step`."""
        return self.latest.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=force)

    def save_best(self, step, state, meta, eval_loss):
        """Saves into best/ ; orbax keeps only the lowest `eval_loss`."""
        return self.best.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            metrics={"eval_loss": float(eval_loss)}, force=True)

    def restore(self, abstract_state, step=None, which="latest"):
        """(state, meta) of `step` (default: latest complete), placed on the abstract state's shardings."""
        manager = self.latest if which == "latest" else self.best
        step = manager.latest_step() if step is None and which == "latest" else step
        if step is None and which == "best":
            step = manager.best_step()
        if step is None:
            raise CheckpointError(f"{manager.directory}: no complete checkpoint to restore")
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return restored["state"], restored["meta"]

    def wait(self):
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self):
        self.latest.close()
        self.best.close()
