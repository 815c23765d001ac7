"""`dust3r-jax convert SRC OUT_DIR`: official checkpoint -> orbax params + model config JSON."""
import shutil
import tempfile
from pathlib import Path


def add_arguments(parser):
    parser.add_argument("source", help="official .pth (DUSt3R or CroCo), or a Hugging Face folder")
    parser.add_argument("out_dir", help="new directory to write (orbax params + dust3r_jax_model.json)")
    parser.add_argument("--croco", action="store_true",
                        help="CroCo pre-training weights: copy dec_blocks to dec_blocks2, random heads")
    parser.add_argument("--head-type", choices=["linear", "dpt"], default=None,
                        help="head of the model built from a CroCo checkpoint (default: linear)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random heads (CroCo)")


def run(args) -> int:
    from dust3r_jax.loading import load_model, save_model

    out_dir = Path(args.out_dir)
    if out_dir.exists():
        raise FileExistsError(f"output {out_dir} already exists; choose a new directory")
    overrides = {"head_type": args.head_type} if args.head_type else {}
    model, params = load_model(args.source, croco=args.croco, seed=args.seed, **overrides)
    # write next to the target and rename, so a failure leaves nothing half-written
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        save_model(staging / "model", model, params, source=str(args.source))
        (staging / "model").rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    count = sum(int(x.size) for x in __import__("jax").tree_util.tree_leaves(params))
    print(f"wrote {out_dir}: {model.config.head_type} head, {count:,} parameters")
    return 0
