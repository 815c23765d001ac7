"""`dust3r-jax eval --config configs/X.py --workdir DIR [--best] [--config.key=value ...]`.

Evaluates the test criterion (`config.test_criterion`) on the config's test sets with the params of
DIR's latest checkpoint (or the best one with --best, or `config.init_from` if DIR has none).
"""
import json

from dust3r_jax.commands.train import accept_config_overrides, config_from_args


def add_arguments(parser):
    parser.add_argument("--config", required=True, help="a configs/*.py file with get_config()")
    parser.add_argument("--workdir", required=True, help="the training run's folder")
    parser.add_argument("--best", action="store_true", help="use the best-by-eval checkpoint")
    accept_config_overrides(parser)


def run(args) -> int:
    from dust3r_jax.train.loop import evaluate

    results = evaluate(config_from_args(args), args.workdir, which="best" if args.best else "latest")
    print(json.dumps(results, indent=1))
    return 0
