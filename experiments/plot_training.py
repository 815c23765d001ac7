"""The training curve of a run: training loss and held-out test loss against steps, as a PNG.

    python experiments/plot_training.py RUN_DIR [--out experiments/results/train_procedural_curve.png]
        [--title "..."] [--eval-json experiments/results/eval_procedural.json]

Reads RUN_DIR/metrics.jsonl (written by `dust3r-jax train`): 'train' records (loss, its parts,
lr, step time) and 'eval/<name>' records (the test criterion on the held-out scenes). Also writes
the numbers next to the picture (.json): steps, losses, wall time.
"""
import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def read_metrics(run_dir):
    train, evals = [], {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "train":
            train.append(record)
        elif record["kind"].startswith("eval/"):
            evals.setdefault(record["kind"][5:], []).append(record)
    return train, evals


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", default=str(REPO / "experiments" / "results" / "train_procedural_curve.png"))
    parser.add_argument("--title", default="dust3r-jax train --config configs/train_procedural.py")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, evals = read_metrics(args.run_dir)
    if not train:
        raise SystemExit(f"{args.run_dir}/metrics.jsonl has no training record")
    wall = train[-1]["time"] - train[0]["time"] + train[0]["step_time_s"] * train[0]["step"]
    figure, (loss_axis, lr_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = [r["step"] for r in train]
    loss_axis.plot(steps, [r["loss"] for r in train], label="train loss (ConfLoss, alpha 0.2)", lw=1)
    for name, records in evals.items():
        loss_axis.plot([r["step"] for r in records], [r["loss_med"] for r in records], "o-",
                       label=f"held-out {name}: Regr3D_ScaleShiftInv (median)")
    loss_axis.set_xlabel("optimiser step (16 pairs)")
    loss_axis.set_ylabel("loss")
    loss_axis.legend(fontsize=7)
    loss_axis.grid(alpha=0.3)
    lr_axis.plot(steps, [r["lr"] for r in train], lw=1)
    lr_axis.set_xlabel("optimiser step")
    lr_axis.set_ylabel("learning rate")
    lr_axis.grid(alpha=0.3)
    figure.suptitle(f"{args.title}\n{steps[-1]} steps, {wall / 60:.0f} min wall time", fontsize=9)
    figure.tight_layout()
    figure.savefig(args.out, dpi=110)
    summary = {"steps": steps[-1], "wall_seconds": wall, "final_train_loss": train[-1]["loss"],
               "train": [{"step": r["step"], "loss": r["loss"], "lr": r["lr"]} for r in train],
               "eval": {name: [{"step": r["step"], "loss_med": r["loss_med"], "loss_avg": r["loss_avg"]}
                               for r in records] for name, records in evals.items()}}
    Path(args.out).with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"written {args.out} ({steps[-1]} steps, {wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
