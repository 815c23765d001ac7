"""Batched network inference over image pairs, with the official output structure.

`inference(pairs, model, params)` returns what the official `dust3r.inference.inference` returns
(NHWC instead of NCHW):

    {"view1": {"img", "true_shape", "idx", "instance"}, "view2": {...},
     "pred1": {"pts3d", "conf"}, "pred2": {"pts3d_in_other_view", "conf"}}

Arrays are stacked over pairs (leading axis E, in pair order) when all view1 images share one
shape and all view2 images share one shape; otherwise every array entry is a list over pairs
without the leading axis, as the official `collate_with_cat(..., lists=True)` gives. `idx` and
`instance` are plain lists.

How it differs from the official loop (same numbers, up to float32 batch-composition noise):
* pairs are grouped into buckets of equal (view1 shape, view2 shape), so mixed sizes are still
  batched (the official code falls back to batch size 1);
* each distinct image is encoded once for all its pairs (`reuse_encodings=True`, the default):
  the encoder, about 70% of a pair's FLOPs, runs N times for N images instead of twice per pair.
  With `reuse_encodings=False`, a pair (a, b) and its swap (b, a) are put next to each other and
  run with `symmetrized=True`, so each image is encoded once per symmetric pair (the official
  model does this only when the caller happens to order the batch that way);
* a batch smaller than `batch_size` is padded (by repeating its last pair) to the next power of
  two, so each bucket compiles at most log2(batch_size) + 1 programs.
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from dust3r_jax import meshes, xla_cpu
from dust3r_jax.devices import resolve_device
from dust3r_jax.errors import InputError
from dust3r_jax.pretrained import PretrainedModel

VIEW_KEYS = ("img", "true_shape", "idx", "instance")


def _image_shape(view: dict) -> tuple[int, int]:
    """(H, W) of a view's image, stored (1, H, W, 3) or (H, W, 3)."""
    return tuple(np.shape(view["img"])[-3:-1])


def _padded_size(count: int, batch_size: int, step: int) -> int:
    """Smallest power-of-two multiple of `step` >= count, capped at batch_size (a multiple of step)."""
    size = step
    while size < count:
        size *= 2
    return min(size, batch_size)


def plan_batches(pairs: list, batch_size: int) -> list[tuple[list[int], bool]]:
    """Splits pair positions into batches: a list of (positions, symmetrized).

    Batches hold pairs of one shape bucket. A symmetrized batch is made of consecutive
    (a, b), (b, a) units, found by the `instance` labels as the official `is_symmetrized` does.
    Every position appears exactly once; padding is added later.
    """
    if batch_size < 1:
        raise InputError(f"batch_size {batch_size}: must be at least 1")
    buckets: OrderedDict = OrderedDict()
    for position, (view1, view2) in enumerate(pairs):
        buckets.setdefault((_image_shape(view1), _image_shape(view2)), []).append(position)

    batches = []
    sym_batch = batch_size - batch_size % 2  # symmetric units are 2 pairs
    for (shape1, shape2), positions in buckets.items():
        units, singles = [], []
        if shape1 == shape2 and sym_batch >= 2:
            by_instances = {}
            for position in positions:
                view1, view2 = pairs[position]
                by_instances.setdefault((view1["instance"], view2["instance"]), []).append(position)
            used = set()
            for position in positions:
                if position in used:
                    continue
                view1, view2 = pairs[position]
                partners = [p for p in by_instances.get((view2["instance"], view1["instance"]), [])
                            if p not in used and p != position]
                if partners and view1["instance"] != view2["instance"]:
                    units.append([position, partners[0]])
                    used.update((position, partners[0]))
                else:
                    singles.append(position)
                    used.add(position)
        else:
            singles = list(positions)
        per_batch = max(sym_batch // 2, 1)  # (no units at all when batch_size is 1)
        for start in range(0, len(units), per_batch):
            batches.append(([p for unit in units[start:start + per_batch] for p in unit], True))
        for start in range(0, len(singles), batch_size):
            batches.append((singles[start:start + batch_size], False))
    return batches


_COMPILED: dict = {}


def _model_key(model):
    """Models built from equal configs compute the same function: share their compiled programs
    (a second `load_model` of the same architecture does not recompile)."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        return (type(model).__module__, type(model).__qualname__, repr(sorted(config.to_dict().items())))
    return id(model)


def _stack_views(pairs: list, positions: list[int], side: int) -> dict:
    """The model input of one side (0: view1, 1: view2) for the given pairs: img (B, H, W, 3), true_shape (B, 2)."""
    views = [pairs[p][side] for p in positions]
    img = np.stack([np.asarray(v["img"], dtype=np.float32).reshape(np.shape(v["img"])[-3:]) for v in views])
    true_shape = np.stack([np.asarray(v["true_shape"], dtype=np.int32).reshape(2) for v in views])
    return {"img": img, "true_shape": true_shape}


def _pad(positions: list[int], symmetrized: bool, batch_size: int, multiple: int = 1) -> list[int]:
    """`positions` padded (by repeating the last pair, or the last symmetric unit) to the next power
    of two (at most `batch_size`), then to a multiple of `multiple` (the device count of a mesh)."""
    step = 2 if symmetrized else 1
    target = _padded_size(len(positions), batch_size - batch_size % step if symmetrized else batch_size, step)
    target = meshes.round_up(target, math.lcm(step, multiple))
    padded = list(positions)
    while len(padded) < target:
        padded.extend(positions[-step:])
    return padded


def _wants_ynn_off(model, image_hw) -> bool:
    """Whether images of `image_hw` have enough tokens for the option (models without a patch
    size, such as test stand-ins, never do)."""
    patch = getattr(getattr(model, "config", None), "patch_size", None)
    tokens = (int(image_hw[0]) // patch) * (int(image_hw[1]) // patch) if patch else 0
    return bool(patch) and tokens >= xla_cpu.policy().forward_min_tokens


def forward_compiler_options(model, image_hw, backend: str | None = None) -> dict:
    """Compiler options for jitting the model on images of `image_hw` = (H, W): on the CPU
    backend and from 512 tokens per image (512x384, not 224), XLA:CPU's YNNPACK fusions off,
    which is 5-15% faster there; otherwise {}. `inference` uses them; a caller who jits
    `model.apply` itself can too: `jax.jit(model.apply, compiler_options=forward_compiler_options(model, (384, 512)))`.
    """
    return xla_cpu.ynn_off_options(backend) if _wants_ynn_off(model, image_hw) else {}


def _largest_image(method: str, static: tuple, args: tuple) -> tuple[int, int]:
    """(H, W) of the largest image a call of `method` sees (for the choice of compiler options)."""
    if method == "predict_from_tokens":
        return max(static, key=lambda hw: hw[0] * hw[1])
    views = [a for a in args if isinstance(a, dict) and "img" in a]
    return max((tuple(np.shape(v["img"])[1:3]) for v in views), key=lambda hw: hw[0] * hw[1])


def _method_fn(model, method: str, *static) -> Callable:
    """jax.jit of `model.apply(..., method=method)`, one per (architecture, method, static args);
    jit then caches one program per input shape. Large images compile with
    `forward_compiler_options` on CPU."""
    key = (_model_key(model), method, *static)
    entry = _COMPILED.get(key)
    if entry is None or (isinstance(key[0], int) and entry[0] is not model):
        def call(params, *args):
            return model.apply({"params": params}, *args, *static, method=method)

        def wants_ynn_off(params, *args):
            return _wants_ynn_off(model, _largest_image(method, static, args))

        entry = (model, xla_cpu.jit_choosing_options(call, wants_ynn_off))
        _COMPILED[key] = entry
    return entry[1]


class Placement:
    """Where a batch runs: JAX's default device, one given device, or split along its first axis
    over every device of a mesh (params replicated). Results come back to the host of every process."""

    def __init__(self, device: jax.Device | None = None, mesh=None):
        self.device, self.mesh = device, mesh
        self.multiple = 1 if mesh is None else meshes.mesh_size(mesh)

    def params(self, params):
        if self.mesh is not None:
            return meshes.put_replicated(params, self.mesh)
        return params if self.device is None else jax.device_put(params, self.device)

    def batch(self, batch):
        if self.mesh is not None:
            return meshes.put_batch(batch, self.mesh)
        return batch if self.device is None else jax.device_put(batch, self.device)

    def take_rows(self, table, rows):
        """table[rows] for a pytree of (N, ...) device arrays, placed like a batch (jitted: the rows
        never leave the devices)."""
        return _row_taker(self.mesh)(table, self.batch(np.asarray(rows, np.int32)))


@functools.cache
def _row_taker(mesh):
    def take(table, rows):
        return jax.tree.map(lambda x: x[rows], table)
    if mesh is None:
        return jax.jit(take)
    # (a spec naming only the first axis fits the tokens and the positions alike)
    return jax.jit(take, out_shardings=meshes.sharded_along(mesh, 0, 1))


class Encodings:
    """Every distinct image of some pairs encoded once: per image shape, a table of tokens
    (N, T, E) and token positions (N, T, 2) on the devices (split along N over a mesh), and for each
    image (by the identity of its `img` array) its (table, row)."""

    def __init__(self):
        self.tables: list = []   # [(tokens, positions)] per image shape
        self.where: dict = {}    # id(view["img"]) -> (table, row)

    def __len__(self):
        return len(self.where)

    def rows(self, keys: list, placement: Placement):
        """(tokens (B, T, E), positions (B, T, 2)) of the images `keys` (all of one shape)."""
        table = {self.where[k][0] for k in keys}
        assert len(table) == 1, "a batch holds images of one shape"
        return placement.take_rows(self.tables[table.pop()], [self.where[k][1] for k in keys])


def encode_images(pairs: list, model, params, batch_size: int = 16, device: jax.Device | None = None,
                  progress=None, placement: Placement | None = None) -> Encodings:
    """Encodes every distinct image of `pairs` once (see `Encodings`).

    Images are told apart by the identity of their `img` array (make_pairs shares one dict per
    image), never by their labels, so two different images can't be mixed up. Batches hold one
    image shape, padded to a power of two as pair batches are (and to a multiple of the mesh).
    `params` must already be placed (`placement.params`).
    """
    placement = placement or Placement(device)
    views: dict = {}
    for pair in pairs:
        for view in pair:
            views.setdefault(id(view["img"]), view)
    by_shape: OrderedDict = OrderedDict()
    for key, view in views.items():
        by_shape.setdefault(_image_shape(view), []).append(key)
    batch_size = meshes.round_up(batch_size, placement.multiple)
    encode = _method_fn(model, "encode_views")
    encodings = Encodings()
    for keys in by_shape.values():
        outputs = []
        for start in range(0, len(keys), batch_size):
            chunk = keys[start:start + batch_size]
            padded = _pad(chunk, False, batch_size, placement.multiple)
            batch = placement.batch(_stack_views([(views[k],) for k in padded], range(len(padded)), 0))
            outputs.append(encode(params, batch))
            for row, key in enumerate(chunk):
                encodings.where[key] = (len(encodings.tables), start + row)
            if progress is not None:
                progress.set_postfix_str(f"encoded {len(encodings)}/{len(views)} images")
        # one table per shape: batch b's rows start at b * batch_size (earlier batches are full)
        encodings.tables.append(outputs[0] if len(outputs) == 1 else jax.tree.map(
            lambda *parts: jnp.concatenate(parts), *outputs))
    return encodings


def _store(results: list, positions: list[int], pred1: dict, pred2: dict) -> None:
    pred1, pred2 = meshes.fetch((pred1, pred2))
    for row, position in enumerate(positions):  # padding rows are dropped here
        results[position] = (
            {k: np.asarray(v[row], dtype=np.float32) for k, v in pred1.items()},
            {k: np.asarray(v[row], dtype=np.float32) for k, v in pred2.items()},
        )


def _dispatch(pairs, batches, model, params, batch_size, reuse_encodings, placement, bar):
    """Yields (positions, (pred1, pred2)) per batch, in order, as device arrays: each batch is
    dispatched (asynchronously) before the previous one is read back."""
    # (models without the encoder/decoder split, such as test stand-ins, run whole pairs)
    if reuse_encodings and hasattr(model, "encode_views") and hasattr(model, "predict_from_tokens"):
        encodings = encode_images(pairs, model, params, 2 * batch_size, progress=bar, placement=placement)
        for positions, _ in batches:  # symmetric units need no special run once encodings are shared
            padded = _pad(positions, False, batch_size, placement.multiple)
            sides = []
            for side in (0, 1):
                tokens, token_positions = encodings.rows([id(pairs[p][side]["img"]) for p in padded], placement)
                true_shape = np.stack([np.asarray(pairs[p][side]["true_shape"], np.int32).reshape(2) for p in padded])
                sides.append((tokens, token_positions, placement.batch(true_shape)))
            image_hw = (_image_shape(pairs[positions[0]][0]), _image_shape(pairs[positions[0]][1]))
            yield positions, _method_fn(model, "predict_from_tokens", *image_hw)(params, *sides[0], *sides[1])
    else:
        for positions, symmetrized in batches:
            padded = _pad(positions, symmetrized, batch_size, placement.multiple)
            view1, view2 = placement.batch((_stack_views(pairs, padded, 0), _stack_views(pairs, padded, 1)))
            yield positions, _method_fn(model, "__call__", symmetrized)(params, view1, view2)


def run_pairs(pairs: list, model, params, batch_size: int = 8, verbose: bool = True,
              device: jax.Device | None = None, reuse_encodings: bool = True,
              progress: Callable[[int, int], None] | None = None, mesh=None) -> list[tuple[dict, dict]]:
    """Per-pair network outputs [(pred1, pred2), ...] in pair order, numpy, without batch axis.

    mesh: run each batch split along its pairs over every device of this mesh (`batch_size` is
    rounded up to a multiple of the device count; padding pairs are dropped). None: one device.
    progress: optional `progress(done_pairs, total_pairs)`, called after each batch."""
    placement = Placement(device, mesh)
    batch_size = meshes.round_up(batch_size, placement.multiple)
    batches = plan_batches(pairs, batch_size)
    results: list = [None] * len(pairs)
    params = placement.params(params)
    bar = tqdm(total=len(pairs), desc="inference", unit="pair", disable=not verbose)
    done = 0

    def read_back(positions, outputs):
        nonlocal done
        _store(results, positions, *outputs)
        done += len(positions)
        bar.update(len(positions))
        if progress is not None:
            progress(done, len(pairs))

    pending = None
    for batch in _dispatch(pairs, batches, model, params, batch_size, reuse_encodings, placement, bar):
        if pending is not None:  # the previous batch comes to the host while this one computes
            read_back(*pending)
        pending = batch
    if pending is not None:
        read_back(*pending)
    bar.close()
    return results


def _view_entry(view: dict, key: str):
    if key == "img":
        return np.asarray(view["img"], dtype=np.float32).reshape(np.shape(view["img"])[-3:])
    if key == "true_shape":
        return np.asarray(view["true_shape"], dtype=np.int32).reshape(2)
    return view[key]


def collate(pairs: list, predictions: list) -> dict:
    """The official output dict: stacked arrays when shapes allow (see module docstring), else lists."""
    same_size = (len({_image_shape(v1) for v1, _ in pairs}) == 1
                 and len({_image_shape(v2) for _, v2 in pairs}) == 1)

    def gather(entries: list):
        if isinstance(entries[0], np.ndarray):
            return np.stack(entries) if same_size else entries
        return list(entries)

    output = {}
    for side, name in enumerate(("view1", "view2")):
        output[name] = {key: gather([_view_entry(pair[side], key) for pair in pairs]) for key in VIEW_KEYS}
    for side, name in enumerate(("pred1", "pred2")):
        keys = predictions[0][side].keys()
        output[name] = {key: gather([pred[side][key] for pred in predictions]) for key in keys}
    return output


def inference(pairs: list, model, params=None, batch_size: int = 8, verbose: bool = True,
              device: jax.Device | str | None = None, reuse_encodings: bool = True,
              progress: Callable[[int, int], None] | None = None, mesh=None) -> dict:
    """Runs the network on every pair (from `make_pairs`) and collates like the official code.

    Two signatures, told apart by the type of `model`:
      inference(pairs, model, params, ...)  with (model, params) from `dust3r_jax.load_model`;
      inference(pairs, model, device, ...)  the official one, with `model` from
        `AsymmetricCroCo3DStereo.from_pretrained` (it carries its params).

    Args:
      pairs: list of (view1, view2) image dicts from `load_images` (`img` (1, H, W, 3) in [-1, 1],
        `true_shape` (1, 2) int32, `idx`, `instance`).
      model, params: from `dust3r_jax.load_model`.
      batch_size: pairs per forward call (the official default is 8).
      device: run on this one device: "cpu", "cuda", "gpu", "tpu" or a jax.Device.
      mesh: run each batch split along its pairs over the devices of this `jax.sharding.Mesh`
        (params replicated; batches padded to a multiple of the device count, padding dropped).
        Default (no device, no mesh): every device JAX sees, when it sees more than one
        (`meshes.data_mesh()`), else the default device. `mesh=False`: the default device only.
        Multi-host (after `jax.distributed.initialize`): every process makes the same call with
        the same pairs; each process's devices compute their share of every batch and every
        process gets the whole output.
      reuse_encodings: encode each distinct image once for all its pairs (same numbers up to
        float32 batch-composition noise, and 2-3x fewer FLOPs on a complete graph).
      progress: optional `progress(done_pairs, total_pairs)`, called after each batch.
    Returns:
      {"view1", "view2", "pred1", "pred2"}: pred1["pts3d"] (E, H, W, 3) view1 pixels in view1's
      camera frame, pred1["conf"] (E, H, W), pred2["pts3d_in_other_view"] (E, H, W, 3) view2
      pixels in view1's camera frame, pred2["conf"]; lists over pairs when shapes differ.
    """
    if not pairs:
        raise InputError("inference: no pairs given")
    if isinstance(model, PretrainedModel):  # official call: the third argument is the device
        if params is not None and device is not None:
            raise InputError("inference(pairs, model, device): device given twice (positionally and by keyword)")
        model, params, device = model.module, model.params, device if params is None else params
    elif params is None:
        raise InputError("inference(pairs, model, params): no params; pass the params of load_model, or a model "
                         "from AsymmetricCroCo3DStereo.from_pretrained, which carries them")
    device = resolve_device(device)
    mesh = default_mesh(device, mesh)
    predictions = run_pairs(pairs, model, params, batch_size=batch_size, verbose=verbose, device=device,
                            reuse_encodings=reuse_encodings, progress=progress, mesh=mesh)
    return collate(pairs, predictions)


def default_mesh(device, mesh):
    """The mesh `inference` runs on: the one given; none when a device is given or mesh=False;
    otherwise all devices when JAX sees more than one."""
    if mesh is False:
        return None
    if mesh is not None:
        if device is not None:
            raise InputError("inference: give a device or a mesh, not both")
        return mesh
    if device is None and jax.device_count() > 1:
        return meshes.data_mesh()
    return None
