"""`train(config, workdir)` and `evaluate(config, workdir)`: the host side of training.

The host only moves batches in and reports between steps; each optimiser step (all accumulated
micro-batches) is one jitted call. Order of a run:

  distributed init (multi-host) -> mesh -> model -> optimiser -> sharded state (random or
  pretrained) -> restore the latest complete checkpoint if any -> steps, with evaluation at epoch
  boundaries (or every `eval.every_steps`), async checkpoints every `checkpoint.every_steps`, best
  by the median test loss -> final eval + checkpoint.

Exact resume: the data order is a function of (epoch, batch), the state holds step, params,
optimiser state and RNG, so a run restored at step N continues exactly as an uninterrupted one.
"""
import math
import time

import jax
import numpy as np

from dust3r_jax.data.loader import to_global_arrays
from dust3r_jax.errors import ConfigError
from dust3r_jax.losses import criterion_from_string
from dust3r_jax.train import checkpoint as ckpt_lib
from dust3r_jax.train import sharding as shd
from dust3r_jax.train import sources as sources_lib
from dust3r_jax.train.metrics import MetricsLogger
from dust3r_jax.train.optimizer import make_optimizer, param_group_counts
from dust3r_jax.train.state import abstract_params_and_shardings, abstract_state, create_train_state
from dust3r_jax.train.step import (STEP_KEYS, batch_shardings, make_eval_step, make_split_accumulation,
                                   make_train_step)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or inf (the official trainer stops too)."""


def initialize_distributed(dist_config):
    """`jax.distributed.initialize` when the config asks for several processes (or auto-detection).

    Must run before any other JAX call. On CPU, collectives go through gloo.
    """
    if dist_config.num_processes <= 1 and not dist_config.auto:
        return
    if jax.distributed.is_initialized():
        return
    if dist_config.cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", dist_config.cpu_collectives)
    if dist_config.auto:  # TPU pods, SLURM, ...: the cluster environment says who is who
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator_address=dist_config.coordinator_address,
                                   num_processes=dist_config.num_processes,
                                   process_id=dist_config.process_id)


def build_model(model_section):
    from dust3r_jax.model import AsymmetricCroCo3DStereo, model_config

    return AsymmetricCroCo3DStereo(model_config(**model_section.to_dict()))


def load_pretrained(path):
    """Params of a CroCo v2 / DUSt3R checkpoint through the importers (`dust3r_jax.load_model`).

    Training from CroCo pre-training is the official recipe (its `strict=False` load): such a file
    is loaded with croco=True, so its heads start random; any other file must be complete."""
    import dust3r_jax
    from dust3r_jax.errors import CrocoCheckpointError

    try:
        _, params = dust3r_jax.load_model(path)
    except CrocoCheckpointError:
        _, params = dust3r_jax.load_model(path, croco=True)
    return params


def _image_hw(config):
    """A small image size to trace the model at init: param shapes do not depend on it."""
    patch = int(config.model.get("patch_size", 16))
    return 2 * patch, 2 * patch


def stack_micro_batches(host_batches, keys=tuple(STEP_KEYS)):
    """[(view0, view1)] * accum -> {'view0': {key: (accum, B_host, ...)}, 'view1': ...} numpy."""
    return {f"view{v}": {k: np.stack([np.asarray(b[v][k]) for b in host_batches]) for k in keys if k in host_batches[0][v]}
            for v in (0, 1)}


class Run:
    """Everything a training or evaluation run builds from its config, once."""

    def __init__(self, config, workdir, for_training=True):
        initialize_distributed(config.distributed)
        self.config, self.workdir = config, workdir
        self.mesh = shd.make_mesh(tuple(config.mesh.shape))
        self.rules = tuple(tuple(r) for r in config.mesh.logical_axis_rules)
        self.model = build_model(config.model)
        self.global_batch = int(config.data.batch_size)
        self.accum = int(config.optim.accum_iter)
        batch_devices = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        if self.global_batch % batch_devices:
            raise ConfigError(f"data.batch_size={self.global_batch} is not divisible by the {batch_devices} "
                              "devices of the mesh's data x fsdp axes")
        self.train_source = sources_lib.train_source(config) if for_training else None
        self.test_sources = sources_lib.test_sources(config)
        micro_per_epoch = self.train_source.num_batches(0) if for_training else 1
        self.steps_per_epoch = micro_per_epoch // self.accum
        if for_training and self.steps_per_epoch < 1:
            raise ConfigError(f"an epoch has {micro_per_epoch} batches of {self.global_batch}, fewer than "
                              f"optim.accum_iter={self.accum}: no optimiser step fits in an epoch")
        self.total_steps = int(config.optim.epochs) * max(self.steps_per_epoch, 1)
        if config.max_steps:
            self.total_steps = min(self.total_steps, int(config.max_steps))
        abstract, _, _ = abstract_params_and_shardings(self.model, self.mesh, self.rules, _image_hw(config))
        self.tx, self.schedule = make_optimizer(config.optim, max(self.steps_per_epoch, 1), abstract,
                                                freeze=config.model.freeze)
        pretrained = load_pretrained(config.init_from) if config.init_from else None
        self.state, self.shardings, self.load_report = create_train_state(
            self.model, self.tx, self.mesh, self.rules, _image_hw(config), config.seed,
            pretrained=pretrained, pretrained_source=config.init_from or "init")
        self.criterion = criterion_from_string(config.train_criterion)
        self.test_criterion = criterion_from_string(config.test_criterion)
        self.checkpoints = ckpt_lib.RunCheckpoints(f"{workdir}", keep=config.checkpoint.keep,
                                                   async_save=config.checkpoint.async_save)
        self.logger = MetricsLogger(workdir)
        self._train_step = self._eval_step = self._split_step = None

    # -- batches ---------------------------------------------------------------------------------
    def _train_batch_shardings(self):
        template = {f"view{v}": {k: np.zeros((1,) * n) for k, n in STEP_KEYS.items()} for v in (0, 1)}
        return batch_shardings(template, self.mesh, leading_axes=1)

    def _eval_batch_shardings(self):
        template = {f"view{v}": {k: np.zeros((1,) * (n - 1)) for k, n in STEP_KEYS.items()} for v in (0, 1)}
        return batch_shardings(template, self.mesh, leading_axes=0)

    def train_step_fn(self):
        if self._train_step is None:
            self._train_step = make_train_step(self.model, self.tx, self.criterion, self.shardings,
                                               self._train_batch_shardings(), self.mesh)
        return self._train_step

    def eval_step_fn(self):
        if self._eval_step is None:
            self._eval_step = make_eval_step(self.model, self.test_criterion, self.shardings.params,
                                             self._eval_batch_shardings(), self.mesh)
        return self._eval_step

    def step_batches(self, epoch, first_step):
        """Device batches of `epoch` from optimiser step `first_step`: one stacked (accum, B, ...)
        batch per step, or a list of `accum` micro-batches when their shapes (aspect ratios) differ."""
        sharding_tree = self._train_batch_shardings()
        micro_tree = self._eval_batch_shardings()
        micro = self.train_source.host_batches(epoch, start_batch=first_step * self.accum)
        for _ in range(first_step, self.steps_per_epoch):
            group = [next(micro) for _ in range(self.accum)]
            if len({np.shape(b[0]["img"]) + np.shape(b[1]["img"]) for b in group}) == 1:
                yield to_global_arrays(stack_micro_batches(group), sharding_tree, batch_axis=1)
            else:
                yield [to_global_arrays({name: {k: a[0] for k, a in view.items()}
                                         for name, view in stack_micro_batches([b]).items()}, micro_tree)
                       for b in group]

    def train_step(self, state, batch):
        """One optimiser step on what `step_batches` yields -> (state, metrics)."""
        if not isinstance(batch, list):
            return self.train_step_fn()(state, batch)
        if self._split_step is None:
            grad_fn, apply_fn = make_split_accumulation(self.model, self.tx, self.criterion, self.shardings,
                                                        self._eval_batch_shardings(), self.mesh)
            zeros = jax.jit(lambda p: jax.tree.map(jax.numpy.zeros_like, p),
                            in_shardings=(self.shardings.params,), out_shardings=self.shardings.params)
            self._split_step = (grad_fn, apply_fn, zeros)
        grad_fn, apply_fn, zeros = self._split_step
        grads, micro_metrics = zeros(state.params), []
        for micro in batch:
            grads, metrics = grad_fn(state.params, micro, grads)
            micro_metrics.append(metrics)
        return apply_fn(state, grads, micro_metrics)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluate(self, params, step):
        """Test criterion on every test set: {name: {'loss_avg', 'loss_med', details...}}."""
        results = {}
        eval_step = self.eval_step_fn()
        sharding_tree = self._eval_batch_shardings()
        for name, source in self.test_sources.items():
            per_batch = []
            for host_batch in source.host_batches(0):
                batch = {f"view{v}": {k: np.asarray(host_batch[v][k]) for k in STEP_KEYS if k in host_batch[v]}
                         for v in (0, 1)}
                per_batch.append(eval_step(params, to_global_arrays(batch, sharding_tree)))
            if not per_batch:
                continue
            per_batch = jax.device_get(per_batch)
            losses = np.array([m["loss"] for m in per_batch], np.float64)
            summary = {"loss_avg": float(losses.mean()), "loss_med": float(np.median(losses))}
            for key in per_batch[0]:
                if key != "loss":
                    summary[key] = float(np.mean([m[key] for m in per_batch]))
            results[name] = summary
            self.logger.write(f"eval/{name}", step, summary)
        return results


def _meta(run, step, best):
    epoch, batch = divmod(step, max(run.steps_per_epoch, 1))
    return {"step": int(step), "epoch": int(epoch), "batch_in_epoch": int(batch * run.accum),
            "micro_batches_per_step": run.accum, "global_batch": run.global_batch,
            "best_eval_loss": best, "process_count": jax.process_count()}


def train(config, workdir):
    """Trains from `config` in `workdir` (resuming from its latest complete checkpoint).

    Returns the last logged training metrics (dict of floats) and the final eval results.
    """
    run = Run(config, workdir)
    logger, checkpoints = run.logger, run.checkpoints
    state = run.state
    best = math.inf
    if checkpoints.latest_step() is not None:
        state, meta = checkpoints.restore(abstract_state(state))
        best = meta.get("best_eval_loss", math.inf) if meta.get("best_eval_loss") is not None else math.inf
        logger.write("resume", int(state.step), {"from": int(meta["step"]), "epoch": meta["epoch"],
                                                   "batch_in_epoch": meta["batch_in_epoch"]})
    elif run.load_report is not None:
        r = run.load_report
        logger.write("init", 0, {"from": config.init_from, "loaded": r["loaded"], "missing": len(r["missing"]),
                                 "unexpected": len(r["unexpected"])})
    if int(state.step) == 0:
        groups = param_group_counts(jax.tree.map(lambda x: x, state.params), config.model.freeze)
        logger.write("setup", 0, {"mesh": str(dict(run.mesh.shape)), "steps_per_epoch": run.steps_per_epoch,
                                  "total_steps": run.total_steps, "decay_tensors": groups["decay"][0],
                                  "no_decay_tensors": groups["no_decay"][0]})
    step = int(state.step)
    every_save = int(config.checkpoint.every_steps) or run.steps_per_epoch * int(config.checkpoint.every_epochs)
    every_eval = int(config.eval.every_steps) or run.steps_per_epoch
    try:
        return _train_loop(run, config, state, step, best, every_save, every_eval)
    finally:
        checkpoints.close()  # waits for async saves: no half-finished thread at interpreter exit


def _train_loop(run, config, state, step, best, every_save, every_eval):
    checkpoints = run.checkpoints
    window, last_metrics, eval_results = [], {}, {}
    tick = time.perf_counter()
    while step < run.total_steps:
        epoch, first = divmod(step, run.steps_per_epoch)
        for batch in run.step_batches(epoch, first):
            if step >= run.total_steps:
                break
            if step > 0 and step % every_eval == 0 and run.test_sources:
                eval_results = run.evaluate(state.params, step)
                best = _maybe_save_best(run, state, step, eval_results, best)
            state, metrics = run.train_step(state, batch)
            window.append(metrics)
            step += 1
            if step % config.log_every == 0 or step == run.total_steps:
                last_metrics = _report(run, window, step, tick)
                window, tick = [], time.perf_counter()
            if step % every_save == 0 and step < run.total_steps:
                checkpoints.save(step, state, _meta(run, step, _finite_or_none(best)))
    if window:
        last_metrics = _report(run, window, step, tick)
    if run.test_sources and config.eval.at_end:
        eval_results = run.evaluate(state.params, step)
        best = _maybe_save_best(run, state, step, eval_results, best)
    checkpoints.save(step, state, _meta(run, step, _finite_or_none(best)), force=True)
    checkpoints.wait()
    return {"train": last_metrics, "eval": eval_results, "state": state}


def _finite_or_none(value):
    return None if not math.isfinite(value) else float(value)


def _maybe_save_best(run, state, step, eval_results, best):
    """The official rule: a test set's median loss below the lowest so far writes checkpoint-best."""
    for summary in eval_results.values():
        if summary["loss_med"] < best:
            best = summary["loss_med"]
            run.checkpoints.save_best(step, state, _meta(run, step, best), best)
    return best


def _report(run, window, step, tick):
    """Fetches the window's metrics, stops on a non-finite loss, logs means + lr + throughput.

    tick: perf_counter() at the start of the window; the time is read once the metrics are on
    the host (steps are dispatched asynchronously: before, it would only count the dispatch)."""
    window = jax.device_get(window)
    seconds = time.perf_counter() - tick
    for offset, metrics in enumerate(window):
        if not np.isfinite(metrics["loss"]):
            bad = step - len(window) + offset + 1
            raise NonFiniteLossError(f"step {bad}: training loss is {metrics['loss']} (non-finite); stopping. "
                                     "Check the data (NaN depth/poses?) and the learning rate")
    means = {k: float(np.mean([m[k] for m in window])) for k in window[0] if k != "finite"}
    pairs = len(window) * run.global_batch * run.accum
    means.update({"lr": float(run.schedule(step - 1)), "epoch": (step - 1) / run.steps_per_epoch,
                  "step_time_s": seconds / len(window), "pairs_per_s": pairs / max(seconds, 1e-9),
                  "skipped": int(sum(not m["finite"] for m in window))})
    run.logger.write("train", step, means)
    return means


def evaluate(config, workdir, which="latest"):
    """Test criterion on the test sets with the params of the run's latest (or best) checkpoint,
    or of `config.init_from` when the workdir has no checkpoint."""
    from pathlib import Path

    if not config.init_from and not any(p.name.isdigit() for p in (Path(workdir) / "checkpoints").glob("*")):
        raise ConfigError(f"{workdir}: no checkpoint to evaluate and no init_from checkpoint in the config")
    run = Run(config, workdir, for_training=False)
    state = run.state
    if run.checkpoints.latest_step() is not None or which == "best":
        state, _ = run.checkpoints.restore(abstract_state(state), which=which)
    elif not config.init_from:
        raise ConfigError(f"{workdir}: no checkpoint to evaluate and no init_from checkpoint in the config")
    if not run.test_sources:
        raise ConfigError("nothing to evaluate: data.test_dataset is empty (or data.synthetic.test_pairs is 0)")
    results = run.evaluate(state.params, int(state.step))
    run.checkpoints.close()
    return results
