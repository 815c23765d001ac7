"""`dust3r-jax export-model --config configs/X.py --workdir DIR --out FOLDER [--best] [--dtype float16]`.

Writes the params of a training run's latest (or best) checkpoint as an official-format Hugging
Face folder (config.json + model.safetensors, see `dust3r_jax.hf_export`), which `load_model`,
`--weights` and the official `from_pretrained` read. The model config is the training one in
inference mode (`landscape_only=False`, as the official `load_model` builds it). Prints the
weights' SHA-256, which `dust3r_jax.shipped` records for a model shipped in the package.
"""
from dust3r_jax.commands.train import accept_config_overrides, config_from_args


def add_arguments(parser):
    parser.add_argument("--config", required=True, help="the run's configs/*.py file")
    parser.add_argument("--workdir", required=True, help="the training run's folder")
    parser.add_argument("--out", required=True, help="folder to write config.json + model.safetensors into")
    parser.add_argument("--best", action="store_true", help="the best-by-eval checkpoint instead of the latest")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                        help="storage dtype of the weights (loaded back as float32)")
    accept_config_overrides(parser)


def run(args) -> int:
    import numpy as np

    from dust3r_jax.hf_export import write_hf_folder
    from dust3r_jax.model_config import model_config
    from dust3r_jax.shipped import sha256_of
    from dust3r_jax.train.loop import Run
    from dust3r_jax.train.state import abstract_state

    config = config_from_args(args)
    config.data.test_dataset = ""  # nothing to read: only the checkpoint is needed
    config.data.synthetic.test_pairs = 0
    run = Run(config, args.workdir, for_training=False)
    state, meta = run.checkpoints.restore(abstract_state(run.state), which="best" if args.best else "latest")
    run.checkpoints.close()
    inference_config = model_config(**{**config.model.to_dict(), "landscape_only": False, "freeze": "none"})
    _, weights = write_hf_folder(args.out, inference_config, state.params, dtype=np.dtype(args.dtype),
                                 metadata={"step": meta["step"], "source": "dust3r-jax export-model"})
    print(f"step {meta['step']} -> {args.out} (sha256 {sha256_of(weights)})")
    return 0
