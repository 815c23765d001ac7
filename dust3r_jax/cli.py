"""The `dust3r-jax` command: one sub-command per job, each defined in its own module.

A sub-command module exposes `add_arguments(parser)` and `run(args) -> int`. Modules are imported
only when their sub-command runs, so `dust3r-jax convert` does not pay for the training stack.
"""
import argparse
import importlib
import sys

from dust3r_jax.errors import InputError

# sub-command -> (module, one-line help)
COMMANDS = {
    "demo": ("dust3r_jax.commands.demo", "reconstruct a rendered held-out scene with the shipped model and compare with its ground truth"),
    "convert": ("dust3r_jax.commands.convert", "import an official checkpoint (.pth or HF folder) into an orbax checkpoint"),
    "reconstruct": ("dust3r_jax.commands.reconstruct", "images -> pointmaps -> aligned scene, written to a folder"),
    "train": ("dust3r_jax.commands.train", "train or fine-tune from an ml-collections config"),
    "eval": ("dust3r_jax.commands.evaluate", "evaluate a checkpoint with the test criterion"),
    "export-model": ("dust3r_jax.commands.export_model", "write a training run's params as an official-format Hugging Face folder"),
    "ui": ("dust3r_jax.commands.ui", "the web demo (gradio): reconstruct uploaded photos in the browser"),
    "build-data": ("dust3r_jax.commands.build_data", "write a preprocessed dataset folder as a TFDS array_record dataset"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="dust3r-jax", description="DUSt3R in JAX: import checkpoints, reconstruct scenes from photos, train."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text)
        if name == chosen:  # only the chosen command's module is imported
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=module.run)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not hasattr(args, "config_overrides"):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if unknown:  # `--config.a.b=value` overrides of a training command (see commands/train.py)
        args.config_overrides = unknown
    try:
        return int(args._run(args) or 0)
    except (InputError, FileNotFoundError, FileExistsError) as err:
        print(f"dust3r-jax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
