"""`dust3r-jax build-data`: pack a preprocessed dataset folder into TFDS array_record.

    dust3r-jax build-data --dataset Co3d --root /data/co3d_processed --data-dir /data/tfds \\
        [--splits train test]

Then read it with `ROOT` left out and `tfds_data_dir=/data/tfds` (see dust3r_jax.data.mixture).
"""
from dust3r_jax.data.sources import SOURCE_NAMES


def add_arguments(parser):
    parser.add_argument("--dataset", required=True, choices=SOURCE_NAMES, help="official dataset class name")
    parser.add_argument("--root", required=True, help="the preprocessed folder (the official ROOT)")
    parser.add_argument("--data-dir", required=True, help="TFDS data_dir to write into")
    parser.add_argument("--splits", nargs="*", default=None,
                        help="splits to pack (default: the dataset's usual ones)")


def run(args):
    from dust3r_jax.data.tfds_builder import RecordStore, build_source_dataset

    build_source_dataset(args.dataset, args.root, args.data_dir, splits=args.splits)
    store = RecordStore(args.dataset, args.data_dir)
    print(f"{args.dataset}: {len(store)} files packed into {store.name}")
    return 0
