"""Sampler, mixtures, collate, hosts and grain against the official `get_data_loader` outputs.

`datasets/expected/batches.json` gives scenarios (a dataset string, batch size, epochs, shuffle);
the npz holds the sampler orders, the `N @ D` index maps and the first batches. Everything is
discovered from those files.
"""
import json

import numpy as np
import pytest

from data_fixtures import ALL_FIELDS, ARRAY_FIELDS
from dust3r_jax.data.loader import PairLoader, collate, sampler_order, to_global_arrays
from dust3r_jax.data.mixture import MulDataset, ResizedDataset, leaves_of, parse_dataset
from dust3r_jax.errors import ConfigError


@pytest.fixture(scope="module")
def batches(reference_dir):
    path = reference_dir / "datasets" / "expected" / "batches.json"
    if not path.is_file():
        pytest.skip("no expected/batches.json")
    manifest = json.loads(path.read_text())
    scenarios = {k: v for k, v in manifest.items() if isinstance(v, dict) and "dataset" in v}
    return scenarios, path.with_suffix(".npz")


def _epochs(scenario):
    """{epoch: per-epoch info} whatever the scenario's shape (one `epoch` or several `epochs`)."""
    if "epochs" in scenario:
        return {int(e): info for e, info in scenario["epochs"].items()}
    return {int(scenario["epoch"]): scenario}


def _dataset(reference_dir, scenario):
    text = scenario["dataset"].replace("{FAKE}", str(reference_dir / "datasets" / "fake"))
    return parse_dataset(text)


def _loader(dataset, scenario):
    stream_seed = scenario.get("torch_manual_seed")  # num_workers=0: every generator from this seed
    return PairLoader(dataset, scenario["batch_size"], shuffle=scenario.get("shuffle", True),
                      drop_last=scenario.get("drop_last", scenario.get("shuffle", True)),
                      stream_seed=stream_seed, world_size=1, rank=0)


def test_sampler_order_equals_official(batches):
    scenarios, _ = batches
    checked = 0
    for name, scenario in scenarios.items():
        for epoch, info in _epochs(scenario).items():
            if "sampler_order" not in info:
                continue
            n_res = len(_resolutions_of(scenario["dataset"]))
            got = sampler_order(scenario["len_dataset"], scenario["batch_size"], n_res, epoch,
                                world_size=scenario.get("world_size", 1), rank=scenario.get("rank", 0),
                                drop_last=scenario.get("drop_last", True))
            np.testing.assert_array_equal(got, np.array(info["sampler_order"]), err_msg=f"{name} epoch {epoch}")
            checked += 1
    assert checked


def _resolutions_of(text):
    import ast

    call = next(node for node in ast.walk(ast.parse(text.strip(), mode="eval")) if isinstance(node, ast.Call))
    value = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "resolution"))
    return value if isinstance(value, list) else [value]


def test_resized_index_maps_equal_official(reference_dir, batches):
    scenarios, _ = batches
    for name, scenario in scenarios.items():
        dataset = _dataset(reference_dir, scenario)
        resized = [d for d in _walk(dataset) if isinstance(d, ResizedDataset)]
        for epoch, info in _epochs(scenario).items():
            if "resized_idxs_mapping" not in info:
                continue
            dataset.set_epoch(epoch)
            expected = info["resized_idxs_mapping"]
            expected = expected if isinstance(expected[0], list) else [expected]
            assert [d.index_map.tolist() for d in resized] == expected, f"{name} epoch {epoch}"


def _walk(dataset):
    yield dataset
    for child in getattr(dataset, "datasets", []) + ([dataset.dataset] if hasattr(dataset, "dataset") else []):
        yield from _walk(child)


def _batch_keys(npz, name):
    """{(epoch, batch)} present in the npz for a scenario."""
    found = set()
    for key in npz.files:
        parts = key.split("/")
        if parts[0] == name and len(parts) == 5:
            found.add((int(parts[1][len("epoch"):]), int(parts[2][len("batch"):])))
    return sorted(found)


def _as_official(field, value):
    if field == "img":
        return np.transpose(value, (0, 3, 1, 2))
    if field == "idx":
        return np.asarray(value).T
    return np.asarray(value)


def test_batches_equal_official(reference_dir, batches):
    scenarios, npz_path = batches
    bad = []
    with np.load(npz_path) as npz:
        for name, scenario in scenarios.items():
            if scenario.get("world_size", 1) != 1:
                continue  # our loader shares one aspect ratio per global batch across hosts (loader.py)
            wanted = _batch_keys(npz, name)
            for epoch in sorted({e for e, _ in wanted}):
                loader = _loader(_dataset(reference_dir, scenario), scenario)
                n_saved = max(b for e, b in wanted if e == epoch) + 1
                iterator = loader.epoch(epoch)
                for b in range(n_saved):
                    batch = next(iterator)
                    for v in range(2):
                        prefix = f"{name}/epoch{epoch}/batch{b}/view{v}/"
                        for field in ALL_FIELDS:
                            got, want = _as_official(field, batch[v][field]), npz[prefix + field]
                            if got.shape != want.shape or not np.array_equal(got, want) or \
                                    (field in ARRAY_FIELDS and got.dtype != want.dtype):
                                bad.append(f"{prefix}{field}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}")
    assert not bad, "\n".join(bad)


def test_each_batch_has_one_aspect_ratio_and_hosts_split_global_batches():
    n, batch, hosts, n_res = 103, 4, 3, 5
    global_order = sampler_order(n, batch * hosts, n_res, epoch=2)
    assert len(global_order) == (n // (batch * hosts)) * batch * hosts

    class _Sized:
        resolutions = [(64, 48)] * n_res

        def __len__(self):
            return n

    per_host = [PairLoader(_Sized(), batch, world_size=hosts, rank=r).order(2) for r in range(hosts)]
    for step in range(len(global_order) // (batch * hosts)):
        rows = np.concatenate([h[step * batch:(step + 1) * batch] for h in per_host])
        np.testing.assert_array_equal(rows, global_order[step * batch * hosts:(step + 1) * batch * hosts])
        assert len(set(rows[:, 1].tolist())) == 1  # one aspect ratio per global step
    assert np.array_equal(PairLoader(_Sized(), batch, world_size=1, rank=0).order(2), sampler_order(n, batch, n_res, 2))


def _small_mix(reference_dir):
    fake = reference_dir / "datasets" / "fake"
    ar = [(32, 24), (32, 16)]
    return (f"5 @ Co3d(split='train', ROOT='{fake}/Co3d', aug_crop=16, mask_bg='rand', resolution={ar}) + "
            f"2 * ARKitScenes(split='train', ROOT='{fake}/ARKitScenes', aug_crop=16, resolution={ar})")


def test_index_seeded_reading_is_thread_safe_and_resumable(reference_dir):
    text = _small_mix(reference_dir)
    threaded = list(PairLoader(parse_dataset(text), 2, seed=11, num_threads=3, world_size=1, rank=0).epoch(1))
    resumed = list(PairLoader(parse_dataset(text), 2, seed=11, world_size=1, rank=0).epoch(1, start_batch=2))
    assert len(threaded) == (5 + 36) // 2
    for a, b in zip(threaded[2:], resumed, strict=True):
        for v in range(2):
            for field in ("img", "pts3d", "rng", "idx", "instance"):
                np.testing.assert_array_equal(a[v][field], b[v][field])
    other_epoch = next(PairLoader(parse_dataset(text), 2, seed=11, world_size=1, rank=0).epoch(2))
    assert not np.array_equal(other_epoch[0]["idx"], threaded[0][0]["idx"])


def test_collate_shapes_and_types(reference_dir):
    dataset = parse_dataset(_small_mix(reference_dir))
    dataset.set_epoch(0)
    view1, view2 = collate([dataset[i, 1] for i in (0, 7, 9)])
    assert view1["img"].shape == (3, 16, 32, 3) and view1["img"].dtype == np.float32
    assert view1["pts3d"].shape == (3, 16, 32, 3) and view1["valid_mask"].dtype == np.bool_
    assert view1["camera_pose"].shape == (3, 4, 4) and view1["true_shape"].dtype == np.int32
    assert view1["idx"].shape == (3, 3) and view1["rng"].dtype == np.int64
    assert view2["idx"][:, 2].tolist() == [1, 1, 1] and len(view2["label"]) == 3


def test_global_arrays_are_sharded_over_the_mesh():
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    devices = jax.devices()
    if len(devices) < 8:
        pytest.skip("needs 8 (virtual) devices")
    mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    sharding = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    rng = np.random.default_rng(0)
    view = dict(img=rng.random((8, 6, 10, 3), dtype=np.float32), camera_pose=rng.random((8, 4, 4), dtype=np.float32),
                label=[str(i) for i in range(8)])
    out = to_global_arrays({key: view[key] for key in ("img", "camera_pose")}, sharding)
    assert out["img"].sharding == sharding and out["img"].shape == (8, 6, 10, 3)
    assert len(out["img"].addressable_shards) == 8 and out["img"].addressable_shards[0].data.shape == (1, 6, 10, 3)
    np.testing.assert_array_equal(np.asarray(out["camera_pose"]), view["camera_pose"])


def test_mixture_wrappers(reference_dir):
    fake = reference_dir / "datasets" / "fake"
    leaf = f"ScanNetpp(split='train', ROOT='{fake}/ScanNetpp', resolution=32, seed=777)"
    mixed = parse_dataset(f" + 30 @ {leaf} + 2 * {leaf}")  # a leading '+' on a number changes nothing
    assert len(mixed) == 30 + 2 * len(leaves_of(mixed)[1])
    mixed.set_epoch(4)
    assert mixed[30 + 5][0]["idx"] == (2, 0, 0)  # k * D: item i is D[i // k]
    resized = parse_dataset(f"3 @ {leaf}")
    with pytest.raises(RuntimeError, match="set_epoch"):
        resized[0]
    not_forwarded = MulDataset(2, parse_dataset(f"3 @ {leaf}"))
    not_forwarded.set_epoch(0)  # as the official MulDataset, does not reach the inner N @ D
    with pytest.raises(RuntimeError, match="set_epoch"):
        not_forwarded[0]


@pytest.mark.parametrize("text,match", [
    ("__import__('os').system('true')", "not a dataset|unknown dataset"),
    ("Co3d(split=open('x'))", "literal"),
    ("Co3d(**{'split': 'train'})", r"\*\*"),
    ("Co3d.mro()", "not a dataset"),
    ("Nope(ROOT='x')", "unknown dataset 'Nope'"),
    ("3 @", "syntax error"),
    ("Co3d(split='train', ROOT='/nonexistent/co3d', resolution=64)", "/nonexistent/co3d"),
])
def test_dataset_strings_are_parsed_safely(text, match):
    with pytest.raises(ConfigError if "nonexistent" not in text else Exception, match=match):
        parse_dataset(text)


def test_mixed_resolutions_are_rejected(reference_dir):
    fake = reference_dir / "datasets" / "fake"
    with pytest.raises(ConfigError, match="resolutions differ"):
        parse_dataset(f"ScanNetpp(split='train', ROOT='{fake}/ScanNetpp', resolution=32) + "
                      f"ScanNetpp(split='train', ROOT='{fake}/ScanNetpp', resolution=64)")


def test_published_strings_parse_with_roots_and_defaults(reference_dir):
    from dust3r_jax.data.mixture import PUBLISHED_DEFAULTS

    fake = reference_dir / "datasets" / "fake"
    text = ("100_000 @ ARKitScenes(aug_crop=256, resolution=224, transform=ColorJitter) "
            "+ 100_000 @ ScanNetpp(split='train', aug_crop=256, resolution=224, transform=ColorJitter)")
    roots = {"ARKitScenes": fake / "ARKitScenes", "ScanNetpp": fake / "ScanNetpp"}
    mixed = parse_dataset(text, roots=roots, defaults=PUBLISHED_DEFAULTS)
    assert len(mixed) == 200_000 and [leaf.split for leaf in leaves_of(mixed)] == ["train", "train"]
    mixed.set_epoch(0)
    assert mixed[123_456][0]["img"].shape == (224, 224, 3)
    with pytest.raises(ConfigError, match="InternalUnreleasedDataset"):
        parse_dataset(text + " + 100_000 @ InternalUnreleasedDataset(aug_crop=128)", roots=roots,
                      defaults=PUBLISHED_DEFAULTS)


@pytest.mark.multihost
def test_two_hosts_read_their_rows_of_one_global_batch(reference_dir, tmp_path):
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    worker = Path(__file__).with_name("data_multihost_worker.py")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    procs = [subprocess.Popen([sys.executable, str(worker), str(r), str(port), str(reference_dir),
                               str(tmp_path / f"host{r}.npz")], env=env, stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    hosts = [np.load(tmp_path / f"host{r}.npz") for r in range(2)]
    assert int(hosts[0]["process_count"]) == 2

    # one process, global batch 4: the same rows, in host order, and the same global values
    fake = reference_dir / "datasets" / "fake"
    dataset = parse_dataset(f"2 * ARKitScenes(split='train', ROOT='{fake}/ARKitScenes', aug_crop=16, "
                            f"resolution=[(32, 24), (32, 16)])")
    view1, _ = next(PairLoader(dataset, 4, seed=5, world_size=1, rank=0).epoch(0))
    np.testing.assert_array_equal(np.concatenate([h["idx"] for h in hosts]), view1["idx"])
    assert tuple(hosts[0]["global_shape"]) == view1["img"].shape
    for host in hosts:
        np.testing.assert_allclose(host["per_sample_sum"], view1["img"].sum(axis=(1, 2, 3)), rtol=1e-6)


def test_stream_mode_continues_across_epochs(reference_dir):
    fake = reference_dir / "datasets" / "fake"
    text = f"ScanNetpp(split='train', ROOT='{fake}/ScanNetpp', aug_crop=16, resolution=[(32, 24), (32, 16)])"
    loader = PairLoader(parse_dataset(text), 2, stream_seed=1234, world_size=1, rank=0)
    next(loader.epoch(0))
    continued = next(loader.epoch(1))[0]["rng"]
    fresh = next(PairLoader(parse_dataset(text), 2, stream_seed=1234, world_size=1, rank=0).epoch(1))[0]["rng"]
    assert not np.array_equal(continued, fresh)  # official num_workers=0: the stream is not restarted


@pytest.mark.slow
def test_grain_worker_processes_read_the_same_batches(reference_dir):
    text = _small_mix(reference_dir)
    in_processes = list(PairLoader(parse_dataset(text), 2, seed=4, num_workers=2, world_size=1, rank=0).epoch(1))
    in_thread = list(PairLoader(parse_dataset(text), 2, seed=4, world_size=1, rank=0).epoch(1))
    assert len(in_processes) == len(in_thread)
    for a, b in zip(in_processes, in_thread):
        for v in range(2):
            for field in ("img", "pts3d", "rng", "idx", "label"):
                np.testing.assert_array_equal(a[v][field], b[v][field])


def test_test_loader_order_splits_like_distributed_sampler():
    from dust3r_jax.data.loader import sequential_order

    np.testing.assert_array_equal(sequential_order(5), [0, 1, 2, 3, 4])
    # PyTorch DistributedSampler(shuffle=False): pad with the first indices, rank r takes r::W
    np.testing.assert_array_equal(sequential_order(5, 2, 0), [0, 2, 4])
    np.testing.assert_array_equal(sequential_order(5, 2, 1), [1, 3, 0])
    np.testing.assert_array_equal(sequential_order(2, 4, 3), [1])
