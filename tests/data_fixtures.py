"""Helpers for the data tests: discover the official loader's outputs and compare views exactly.

The per-dataset manifests (`datasets/expected/<Name>.json`) say how each dataset was built (a
constructor string with `{ROOT}`) and which indices were called, in order, on one object; the
npz holds every field of every returned view. Nothing here hard-codes shapes or values.
"""
import json

import numpy as np

ARRAY_FIELDS = ("img", "depthmap", "camera_pose", "camera_intrinsics", "pts3d", "valid_mask", "true_shape")
ALL_FIELDS = ARRAY_FIELDS + ("idx", "rng", "dataset", "label", "instance")


def dataset_manifests(reference_dir, class_names):
    """[(name, manifest, npz path)] for the expected files of the given dataset classes."""
    found = []
    for path in sorted((reference_dir / "datasets" / "expected").glob("*.json")):
        manifest = json.loads(path.read_text())
        if manifest.get("dataset_class") in class_names:
            found.append((manifest["dataset_class"], manifest, path.with_suffix(".npz")))
    return found


def without_root(constructor):
    """A constructor string with its ROOT='{ROOT}' keyword removed (to read from a TFDS build)."""
    import ast

    tree = ast.parse(constructor.strip(), mode="eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            node.keywords = [k for k in node.keywords if k.arg != "ROOT"]
    return ast.unparse(tree)


def call_index(raw):
    return tuple(raw) if isinstance(raw, list) else raw


def ours_as_official(field, value):
    """Our view field in the official storage format (img CHW, idx array)."""
    if field == "img":
        return np.transpose(np.asarray(value), (2, 0, 1))
    return np.asarray(value)


def view_mismatches(view, expected, prefix):
    """Names of the fields of `view` that differ from `expected[prefix + field]` (exactly)."""
    bad = []
    for field in ALL_FIELDS:
        want = expected[prefix + field]
        got = ours_as_official(field, view[field])
        if got.shape != want.shape or (got.dtype != want.dtype and field in ARRAY_FIELDS) \
                or not np.array_equal(got, want):
            detail = ""
            if got.shape == want.shape and got.dtype.kind in "fiub":
                detail = f" max|diff|={np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))):.3g}"
            bad.append(f"{prefix}{field}: got {got.dtype}{got.shape}, expected {want.dtype}{want.shape}{detail}")
    return bad


def manifest_cases(reference_dir, class_names):
    """[(name, manifest, npz, config)] for every dataset config of the given classes."""
    return [(name, manifest, npz, config)
            for name, manifest, npz in dataset_manifests(reference_dir, class_names)
            for config in manifest["configs"]]


def run_manifest_config(dataset, manifest_config, expected):
    """Makes the manifest's calls in order; returns the list of field mismatches (empty if exact)."""
    assert len(dataset) == manifest_config["len"]
    bad = []
    for j, call in enumerate(manifest_config["calls"]):
        views = dataset[call_index(call["index"])]
        assert len(views) == 2
        for v, view in enumerate(views):
            bad += view_mismatches(view, expected, f"{manifest_config['name']}/call{j}/view{v}/")
    return bad


def folder_mismatches(reference_dir, cases):
    """Field mismatches of every case built on its fake folder (empty when all views are exact)."""
    from dust3r_jax.data.mixture import parse_dataset

    bad = []
    for name, manifest, npz, config in cases:
        root = str(reference_dir / "datasets" / manifest["fake_root"])
        dataset = parse_dataset(config["constructor"].replace("{ROOT}", root))
        with np.load(npz) as expected:
            bad += [f"{name} {m}" for m in run_manifest_config(dataset, config, expected)]
    return bad
