"""Checkpoint readers: official .pth files, Hugging Face safetensors, model strings, bad input.

Fixture checkpoints are discovered from `manifest.json -> models` (and `models/*.pth`), so the
same tests run unchanged on another fixture set.
"""
import argparse
import collections
import hashlib
import json
import lzma
import math
import os
import pickle
import shutil
import struct
import zipfile

import ml_dtypes
import numpy as np
import pytest
from conftest import REFERENCE
from pth_writer import (StorageRef, TensorRef, pickle_torch_style, reduce_call_pickle, write_dust3r_checkpoint,
                        write_pth, write_zip_checkpoint)

from dust3r_jax.checkpoints import official_load_model_string, parse_model_string, read_pth, read_safetensors
from dust3r_jax.checkpoints.safetensors_file import SAFETENSORS_DTYPES
from dust3r_jax.errors import CheckpointError, ConfigError


def _manifest_models() -> dict:
    path = REFERENCE / "manifest.json"
    return json.loads(path.read_text())["models"] if path.is_file() else {}


MODELS = _manifest_models()
MODEL_TAGS = sorted(MODELS)
HF_TAGS = sorted(tag for tag, entry in MODELS.items() if "hf" in entry)
ALIAS_TAGS = sorted(tag for tag, entry in MODELS.items() if any("same_tensor_as" in e for e in entry["state_dict"]))


@pytest.fixture(scope="module")
def checkpoints(reference_dir):
    """tag -> read_pth result, read once per module (the DPT fixture inflates to 155 MB)."""
    cache = {}

    def get(tag):
        if tag not in cache:
            cache[tag] = read_pth(reference_dir / MODELS[tag]["file"])
        return cache[tag]
    return get


def _assert_one_line_naming(err: pytest.ExceptionInfo, path, *phrases):
    message = str(err.value)
    assert "\n" not in message, f"error message is not one line: {message!r}"
    assert str(path) in message, f"error does not name the file {path}: {message!r}"
    for phrase in phrases:
        assert phrase in message, f"error lacks {phrase!r}: {message!r}"


# --- official fixture checkpoints -----------------------------------------------------------------

def test_every_fixture_pth_is_listed_in_the_manifest(reference_dir):
    listed = {entry["file"] for entry in MODELS.values()}
    found = {str(p.relative_to(reference_dir)) for p in (reference_dir / "models").glob("*.pth")}
    assert found and found <= listed


@pytest.mark.parametrize("tag", MODEL_TAGS)
def test_fixture_state_dict_matches_manifest(tag, checkpoints):
    """Keys (in stored order), shapes and dtypes of the state dict are the manifest's."""
    state_dict = checkpoints(tag)["model"]
    expected = MODELS[tag]["state_dict"]
    assert list(state_dict) == [e["key"] for e in expected]
    for entry in expected:
        tensor = state_dict[entry["key"]]
        assert isinstance(tensor, np.ndarray), entry["key"]
        assert list(tensor.shape) == entry["shape"], entry["key"]
        assert tensor.dtype == np.dtype(entry["dtype"]), entry["key"]  # ml_dtypes registers 'bfloat16'


@pytest.mark.parametrize("tag", ALIAS_TAGS)
def test_fixture_aliases_share_one_storage(tag, checkpoints):
    """`scratch.layer_rn.{k}` and `layer{k+1}_rn` are one torch storage: same memory, same values."""
    state_dict = checkpoints(tag)["model"]
    for entry in (e for e in MODELS[tag]["state_dict"] if "same_tensor_as" in e):
        alias, original = state_dict[entry["key"]], state_dict[entry["same_tensor_as"]]
        assert np.shares_memory(alias, original), entry["key"]
        np.testing.assert_array_equal(alias, original)


@pytest.mark.parametrize("tag", MODEL_TAGS)
def test_fixture_args_and_epoch(tag, checkpoints):
    checkpoint = checkpoints(tag)
    assert set(checkpoint) == {"args", "model", "epoch"}
    assert type(checkpoint["args"]) is argparse.Namespace
    assert checkpoint["args"].model == MODELS[tag]["model_string"]
    assert checkpoint["epoch"] == MODELS[tag]["epoch"]


@pytest.mark.parametrize("tag", MODEL_TAGS)
def test_official_load_model_string_matches_manifest(tag):
    assert official_load_model_string(MODELS[tag]["model_string"]) == MODELS[tag]["load_model_string"]


@pytest.mark.parametrize("tag", MODEL_TAGS)
def test_parse_fixture_model_string(tag):
    """Parsing gives what the official `eval` of the string passes to the constructor."""
    text = MODELS[tag]["load_model_string"]
    class_name, kwargs = parse_model_string(text)
    assert class_name == text.split("(", 1)[0]
    # oracle: the official loader evals the string; here only on trusted fixture text, no builtins
    seen = {}
    eval(text, {"__builtins__": {}}, {"inf": math.inf, class_name: lambda **kw: seen.update(kw)})
    assert kwargs == seen and list(kwargs) == list(seen)
    config = MODELS[tag]["config"]
    for key in ("enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim", "dec_depth", "dec_num_heads",
                "head_type"):
        assert kwargs[key] == config[key], key


@pytest.mark.parametrize("tag", HF_TAGS)
def test_hf_safetensors_equals_pth(tag, checkpoints, reference_dir, tmp_path):
    """The Hugging Face copy holds the .pth tensors bit for bit; aliases live in its metadata."""
    hf = MODELS[tag]["hf"]
    unpacked = tmp_path / "model.safetensors"
    try:  # 155 MB: do not leave it in pytest's kept temp folders
        with lzma.open(reference_dir / hf["dir"] / "model.safetensors.xz") as src, open(unpacked, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        assert unpacked.stat().st_size == hf["safetensors_size"]
        with open(unpacked, "rb") as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == hf["safetensors_sha256"]
        tensors, metadata = read_safetensors(unpacked)
    finally:
        unpacked.unlink(missing_ok=True)

    assert [(k, list(v.shape), v.dtype) for k, v in tensors.items()] == [
        (e["key"], e["shape"], SAFETENSORS_DTYPES[e["dtype"]]) for e in hf["safetensors_keys"]]
    assert metadata == hf["safetensors_metadata"]

    state_dict = checkpoints(tag)["model"]
    aliases = {e["key"]: e["same_tensor_as"] for e in MODELS[tag]["state_dict"] if "same_tensor_as" in e}
    assert set(tensors) == set(state_dict) - set(aliases)
    for name, tensor in tensors.items():
        np.testing.assert_array_equal(tensor, state_dict[name], err_msg=name)
    for alias, stored in metadata.items():
        np.testing.assert_array_equal(tensors[stored], state_dict[alias], err_msg=alias)


# --- round trips through the test writer ----------------------------------------------------------

def test_pth_round_trip_dtypes_views_and_aliases(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 6)).astype(np.float32)
    state_dict = {
        "weight": base,
        "alias_of_weight": base,                       # same tensor under two names
        "rows_1_2": base[1:3],                         # view at an offset into the same storage
        "transposed": base.T,                          # non-contiguous strides
        "bf16": rng.normal(size=(3, 5)).astype(ml_dtypes.bfloat16),
        "f16": rng.normal(size=(7,)).astype(np.float16),
        "f64": rng.normal(size=(2, 2)),
        "i64": np.arange(-3, 9, dtype=np.int64).reshape(3, 4),
        "i32": np.arange(5, dtype=np.int32),
        "u8": np.arange(250, 256, dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }
    path = tmp_path / "round_trip.pth"
    write_dust3r_checkpoint(path, state_dict, "AsymmetricCroCo3DStereo(enc_depth=2)", epoch=7)
    checkpoint = read_pth(path)
    assert checkpoint["epoch"] == 7 and checkpoint["args"].model == "AsymmetricCroCo3DStereo(enc_depth=2)"
    loaded = checkpoint["model"]
    assert list(loaded) == list(state_dict)
    for name, expected in state_dict.items():
        assert loaded[name].dtype == expected.dtype and loaded[name].shape == expected.shape, name
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)
    assert np.shares_memory(loaded["weight"], loaded["alias_of_weight"])
    assert np.shares_memory(loaded["weight"], loaded["rows_1_2"])


@pytest.mark.parametrize("byteorder,compress", [("big", False), ("little", True)])
def test_pth_big_endian_and_deflated_storages(byteorder, compress, tmp_path):
    rng = np.random.default_rng(1)
    state_dict = {"f32": rng.normal(size=(3, 4)).astype(np.float32),
                  "bf16": rng.normal(size=(6,)).astype(ml_dtypes.bfloat16),
                  "i64": np.arange(-2, 4, dtype=np.int64),
                  "c64": (rng.normal(size=3) + 1j * rng.normal(size=3)).astype(np.complex64)}
    path = tmp_path / f"{byteorder}.pth"
    write_pth(path, {"model": state_dict}, byteorder=byteorder, compress=compress)
    loaded = read_pth(path)["model"]
    for name, expected in state_dict.items():
        assert loaded[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)


def test_expanded_tensor_is_not_materialised(tmp_path):
    """A stride-0 tensor over a 3-element storage reads right without allocating its full size."""
    storage = StorageRef("0", np.arange(3, dtype=np.float32))
    data_pkl, storages = pickle_torch_style({"expanded": TensorRef(storage, 1, (100_000, 100_000), (0, 0))})
    path = tmp_path / "expanded.pth"
    write_zip_checkpoint(path, data_pkl, storages)
    expanded = read_pth(path)["expanded"]
    assert expanded.shape == (100_000, 100_000) and expanded.strides == (0, 0)
    assert expanded[12_345, 99_999] == 1.0


def test_croco_style_checkpoint(tmp_path):
    """CroCo pretraining checkpoints: {'model': state dict, 'croco_kwargs': dict of plain values}."""
    croco_kwargs = {"enc_embed_dim": 32, "img_size": (224, 224), "pos_embed": "RoPE100", "norm_im2_in_dec": True}
    state_dict = collections.OrderedDict(
        [("enc_blocks.0.norm1.weight", np.ones(32, np.float32)), ("prediction_head.bias", np.zeros(768, np.float32))])
    path = tmp_path / "croco.pth"
    write_pth(path, {"model": state_dict, "croco_kwargs": croco_kwargs})
    checkpoint = read_pth(path)
    assert checkpoint["croco_kwargs"] == croco_kwargs
    assert isinstance(checkpoint["model"], collections.OrderedDict)
    assert list(checkpoint["model"]) == list(state_dict)


def _write_safetensors(path, entries, metadata=None, pad_header=True):
    """Hand-written safetensors: entries = [(name, tag, array)], raw little-endian bytes."""
    header, chunks, offset = {}, [], 0
    for name, tag, array in entries:
        raw = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": tag, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    if pad_header:
        text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def test_hand_written_bf16_safetensors(tmp_path):
    rng = np.random.default_rng(2)
    entries = [("bf16", "BF16", rng.normal(size=(3, 5)).astype(ml_dtypes.bfloat16)),
               ("f16", "F16", rng.normal(size=(4,)).astype(np.float16)),
               ("f32", "F32", rng.normal(size=(2, 3)).astype(np.float32)),
               ("f64", "F64", rng.normal(size=(2,))),
               ("i64", "I64", np.arange(-4, 4, dtype=np.int64)),
               ("i32", "I32", np.arange(3, dtype=np.int32)),
               ("bool", "BOOL", np.array([True, False])),
               ("u8", "U8", np.arange(5, dtype=np.uint8)),
               ("scalar", "BF16", np.array(1.5, ml_dtypes.bfloat16)),
               ("empty", "F32", np.zeros((0, 4), np.float32))]
    path = tmp_path / "mixed.safetensors"
    _write_safetensors(path, entries, metadata={"format": "pt"}, pad_header=False)
    tensors, metadata = read_safetensors(path)
    assert metadata == {"format": "pt"}
    assert list(tensors) == [name for name, _, _ in entries]
    for name, _, expected in entries:
        assert tensors[name].dtype == expected.dtype and tensors[name].shape == expected.shape, name
        np.testing.assert_array_equal(tensors[name], expected, err_msg=name)


def test_safetensors_written_by_the_reference_library(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.arange(5, dtype=np.int64),
              "c": np.array([True, False])}
    path = tmp_path / "lib.safetensors"
    safetensors_numpy.save_file(arrays, str(path), metadata={"k": "v"})
    tensors, metadata = read_safetensors(path)
    assert metadata == {"k": "v"}
    for name, expected in arrays.items():
        np.testing.assert_array_equal(tensors[name], expected)
        assert tensors[name].dtype == expected.dtype


# --- bad input: .pth ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smallest_fixture_pth(reference_dir):
    files = sorted((reference_dir / "models").glob("*.pth"), key=lambda p: p.stat().st_size)
    if not files:
        pytest.skip("no fixture .pth")
    return files[0]


def test_missing_pth(tmp_path):
    path = tmp_path / "absent.pth"
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, "not found")


def test_truncated_pth(smallest_fixture_pth, tmp_path):
    data = smallest_fixture_pth.read_bytes()
    path = tmp_path / "half.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, "truncated")


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, "not a torch checkpoint")


def test_png_is_not_a_checkpoint(tmp_path):
    from PIL import Image
    path = tmp_path / "image.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, "PNG")


@pytest.mark.parametrize("head,phrase", [
    (b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19" + b"\x00" * 8, "legacy"),
    (pickle.dumps({"model": 1}, protocol=2), "plain pickle"),
    (b"", "empty"),
])
def test_non_zip_pickles_are_refused(head, phrase, tmp_path):
    path = tmp_path / "other.pth"
    path.write_bytes(head)
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, phrase)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "nodata.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/version", "3\n")
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, "data.pkl")


def test_missing_storage_record(tmp_path):
    data_pkl, storages = pickle_torch_style({"w": np.ones((2, 3), np.float32)})
    path = tmp_path / "nostorage.pth"
    write_zip_checkpoint(path, data_pkl, {})
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, "data/0", "missing")


def test_short_storage_record(tmp_path):
    data_pkl, storages = pickle_torch_style({"w": np.ones((2, 3), np.float32)})
    path = tmp_path / "short.pth"
    write_zip_checkpoint(path, data_pkl, {key: elements[:-1] for key, elements in storages.items()})
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, "data/0", "expected 24")


@pytest.mark.parametrize("compress", [False, True])
def test_corrupt_storage_bytes_fail_the_crc(compress, tmp_path):
    path = tmp_path / "flipped.pth"
    write_pth(path, {"w": np.arange(1000, dtype=np.float32)}, compress=compress)
    data = bytearray(path.read_bytes())
    data[data.find(b"archive/data/0") + 100] ^= 0xFF  # a byte inside that member's data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, "data/0", "corrupt")


def test_tensor_reading_past_its_storage_is_refused(tmp_path):
    storage = StorageRef("0", np.arange(5, dtype=np.float32))
    data_pkl, storages = pickle_torch_style({"w": TensorRef(storage, 3, (4,), (1,))})
    path = tmp_path / "overrun.pth"
    write_zip_checkpoint(path, data_pkl, {"0": storage.elements})
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, "storage '0'")


def test_malicious_os_system_is_refused_without_running(tmp_path):
    """A data.pkl that plain pickle would turn into os.system('touch .../pwned')."""
    control = tmp_path / "control"
    payload_for_control = reduce_call_pickle("os", "system", f"touch {control}")
    pickle.loads(payload_for_control)  # the payload is live: plain pickle runs it
    assert control.exists()

    pwned = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    write_zip_checkpoint(path, reduce_call_pickle("os", "system", f"touch {pwned}"), {})
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, "'os.system'", "refuses")
    assert not pwned.exists()


def test_build_opcode_cannot_patch_argparse_namespace(tmp_path):
    """BUILD applied to the Namespace class itself must not reach the real argparse.Namespace."""
    def text(value):
        return pickle.BINUNICODE + len(value).to_bytes(4, "little") + value.encode()
    payload = (b"\x80\x02" + pickle.EMPTY_DICT + text("cls") + pickle.GLOBAL + b"argparse\nNamespace\n"
               + pickle.NONE + pickle.EMPTY_DICT + text("injected_by_pickle") + text("x") + pickle.SETITEM
               + pickle.TUPLE2 + pickle.BUILD + pickle.SETITEM + pickle.STOP)
    path = tmp_path / "patch.pth"
    write_zip_checkpoint(path, payload, {})
    read_pth(path)
    assert not hasattr(argparse.Namespace, "injected_by_pickle")


class _Touch:
    """An object whose pickle runs os.system('touch <path>') when plain pickle loads it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_malicious_pickle_from_the_real_pickler_is_refused(protocol, tmp_path):
    """Protocols >= 4 name globals with STACK_GLOBAL; those are refused as well."""
    pwned = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    write_zip_checkpoint(path, pickle.dumps({"model": _Touch(pwned)}, protocol=protocol), {})
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, f"'{os.system.__module__}.system'")
    assert not pwned.exists()


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("posix", "system"), ("subprocess", "Popen"),
                                         ("__builtin__", "getattr"), ("builtins", "__import__"),
                                         ("numpy", "load"), ("torch", "load")])
def test_dangerous_globals_are_refused(module, name, tmp_path):
    path = tmp_path / "evil.pth"
    write_zip_checkpoint(path, reduce_call_pickle(module, name, "print('pwned')"), {})
    with pytest.raises(CheckpointError) as err:
        read_pth(path)
    _assert_one_line_naming(err, path, f"'{module}.{name}'")


# --- bad input: safetensors -----------------------------------------------------------------------

@pytest.fixture()
def small_safetensors(tmp_path):
    path = tmp_path / "small.safetensors"
    _write_safetensors(path, [("a", "F32", np.arange(64, dtype=np.float32)),
                              ("b", "BF16", np.ones(8, ml_dtypes.bfloat16))])
    return path


@pytest.mark.parametrize("keep", ["data", "header", "length"])
def test_truncated_safetensors(keep, small_safetensors):
    data = small_safetensors.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    cut = {"data": len(data) - 10, "header": 8 + header_size // 2, "length": 5}[keep]
    small_safetensors.write_bytes(data[:cut])
    with pytest.raises(CheckpointError) as err:
        read_safetensors(small_safetensors)
    _assert_one_line_naming(err, small_safetensors, "truncated")


def test_safetensors_offsets_inconsistent_with_shape(tmp_path):
    path = tmp_path / "bad.safetensors"
    header = json.dumps({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    with pytest.raises(CheckpointError) as err:
        read_safetensors(path)
    _assert_one_line_naming(err, path, "'a'", "needs 12")


def test_safetensors_missing_and_not_json(tmp_path):
    with pytest.raises(CheckpointError) as err:
        read_safetensors(tmp_path / "absent.safetensors")
    _assert_one_line_naming(err, tmp_path / "absent.safetensors", "not found")
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"{nop" + b"\0" * 4)
    with pytest.raises(CheckpointError) as err:
        read_safetensors(path)
    _assert_one_line_naming(err, path, "JSON")


# --- model strings --------------------------------------------------------------------------------

def test_parse_model_string_literals():
    name, kwargs = parse_model_string(
        "Net(a=float('inf'), b=-float('-inf'), c=(1, (2.5, 'x')), d=None, e=True, f=-3, g=[1, 2], h=np.inf, i={'k': 1})")
    assert name == "Net"
    assert kwargs == {"a": math.inf, "b": math.inf, "c": (1, (2.5, "x")), "d": None, "e": True, "f": -3,
                      "g": [1, 2], "h": math.inf, "i": {"k": 1}}


@pytest.mark.parametrize("text", [
    "Net(x=__import__('os').system('true'))", "Net(x=open('f'))", "Net(x=y)", "Net(1)", "Net(**kw)",
    "os.system('true')", "Net(x=lambda: 0)", "Net(x=1) + 1", "Net(x=[i for i in ()])", "Net(x=-'a')", "Net(x=",
])
def test_parse_model_string_refuses_non_literals(text):
    with pytest.raises(ConfigError) as err:
        parse_model_string(text)
    assert "\n" not in str(err.value)


def test_official_load_model_string_quirks():
    # an existing landscape_only is forced to False and, as the official code does, all spaces go
    assert (official_load_model_string("Net(patch_embed_cls='ManyAR_PatchEmbed', landscape_only=True)")
            == "Net(patch_embed_cls='PatchEmbedDust3R',landscape_only=False)")
    with pytest.raises(ConfigError):
        official_load_model_string("Net(landscape_only=0)")
