"""`dust3r-jax build-data`: pack a preprocessed dataset folder into TFDS array_record.

    dust3r-jax build-data --dataset Co3d --root /data/co3d_processed --data-dir /data/tfds \\
        [--splits train test]

Then read it with `ROOT` left out and `tfds_data_dir=/data/tfds` (see dust3r_jax.data.mixture).

`--dataset procedural` first renders the procedural scenes into `--root` (the splits it does
not hold yet: `--scenes` training scenes, `--test-scenes` held-out ones), then packs them:

    dust3r-jax build-data --dataset procedural --root data/procedural --data-dir data/tfds
"""
from pathlib import Path

from dust3r_jax.data.sources import SOURCE_NAMES

_BY_LOWER = {name.lower(): name for name in SOURCE_NAMES}


def _dataset_name(text):
    name = _BY_LOWER.get(text.lower())
    if name is None:
        import argparse

        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; expected one of {', '.join(SOURCE_NAMES)}")
    return name


def add_arguments(parser):
    parser.add_argument("--dataset", required=True, type=_dataset_name,
                        help=f"dataset class name (case-insensitive): {', '.join(SOURCE_NAMES)}")
    parser.add_argument("--root", required=True, help="the preprocessed folder (the official ROOT)")
    parser.add_argument("--data-dir", default=None, help="TFDS data_dir to write into (procedural: optional)")
    parser.add_argument("--splits", nargs="*", default=None,
                        help="splits to pack (default: the dataset's usual ones)")
    procedural = parser.add_argument_group("procedural scenes")
    procedural.add_argument("--scenes", type=int, default=2000, help="training scenes to render")
    procedural.add_argument("--test-scenes", type=int, default=64, help="held-out scenes to render")
    procedural.add_argument("--views", type=int, default=8, help="views per scene")
    procedural.add_argument("--workers", type=int, default=2, help="rendering processes")


def _render_procedural(args):
    from dust3r_jax.data.sources.procedural import index_path, write_split

    counts = {"train": args.scenes, "test": args.test_scenes}
    for split in args.splits or ("train", "test"):
        if (Path(args.root) / index_path(split)).is_file():
            print(f"procedural {split}: already rendered in {args.root}")
            continue
        index = write_split(args.root, split, counts.get(split, args.test_scenes), num_views=args.views,
                            workers=args.workers)
        print(f"procedural {split}: {len(index['seeds'])} scenes, {len(index['pairs'])} view pairs in {args.root}")


def run(args):
    if args.dataset == "Procedural":
        _render_procedural(args)
        if args.data_dir is None:
            return 0
    elif args.data_dir is None:
        from dust3r_jax.errors import InputError

        raise InputError(f"build-data --dataset {args.dataset}: --data-dir is required")
    from dust3r_jax.data.tfds_builder import RecordStore, build_source_dataset

    build_source_dataset(args.dataset, args.root, args.data_dir, splits=args.splits)
    store = RecordStore(args.dataset, args.data_dir)
    print(f"{args.dataset}: {len(store)} files packed into {store.name}")
    return 0
