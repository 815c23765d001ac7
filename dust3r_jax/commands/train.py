"""`dust3r-jax train --config configs/X.py [--config.key=value ...] --workdir DIR`.

Trains (or resumes, when DIR holds checkpoints) with the config's model, data, optimiser, mesh and
checkpoint settings. Multi-host: give each process `--coordinator HOST:PORT --num-processes N
--process-id I` (or `--config.distributed.auto=True` on clusters JAX detects by itself).
"""
import sys

from dust3r_jax.train.config_overrides import load_config


def add_arguments(parser):
    parser.add_argument("--config", required=True, help="a configs/*.py file with get_config()")
    parser.add_argument("--workdir", required=True, help="checkpoints and metrics.jsonl go here")
    parser.add_argument("--coordinator", default=None, help="multi-host: coordinator HOST:PORT")
    parser.add_argument("--num-processes", type=int, default=None, help="multi-host: number of processes")
    parser.add_argument("--process-id", type=int, default=None, help="multi-host: this process's index")
    accept_config_overrides(parser)


def accept_config_overrides(parser):
    """'--config.a.b=value' are no argparse options: `dust3r-jax` hands the arguments argparse does
    not know to a command whose parser has this default, and config_flags parses them."""
    parser.set_defaults(config_overrides=[])


def config_from_args(args):
    config = load_config(args.config, args.config_overrides)
    if getattr(args, "coordinator", None):
        config.distributed.coordinator_address = args.coordinator
    if getattr(args, "num_processes", None) is not None:
        config.distributed.num_processes = args.num_processes
    if getattr(args, "process_id", None) is not None:
        config.distributed.process_id = args.process_id
    return config


def run(args) -> int:
    from dust3r_jax.train.loop import NonFiniteLossError, train

    config = config_from_args(args)
    try:
        result = train(config, args.workdir)
    except NonFiniteLossError as err:
        print(f"dust3r-jax train: error: {err}", file=sys.stderr)
        return 1
    loss = result["train"].get("loss")
    print(f"done: step {int(result['state'].step)}, last loss {loss}")
    return 0
