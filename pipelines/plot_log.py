"""Plot a training log: loss (and the loss per quarter of the timestep range) against the step, log scale.

Reads the log.csv that train_diffusion.py / train_classifier.py write next to their checkpoints and writes a PNG
beside it. Example:

  python pipelines/plot_log.py --run runs/demo                 # -> runs/demo/diffusion/loss.png
  python pipelines/plot_log.py --log runs/demo/pixel_diffusion/log.csv --out pixel_loss.png
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from pipelines.cli import make_parser
from runfs import RunPaths, atomic_path

QUARTERS = ("q0", "q1", "q2", "q3")  # q0 = the least noisy quarter of the timesteps


def read_log(path: Path) -> dict[str, list[float]]:
    """Columns of a training log.csv as float lists (empty cells -> nan)."""
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}: train first (pipelines/train_diffusion.py --run DIR)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no logged steps yet (the first row comes after --log-interval steps)")
    return {key: [float(r[key]) if r.get(key) else math.nan for r in rows] for key in rows[0]}


def plot_log(columns: dict[str, list[float]], out: Path, metric: str = "mse", title: str = "") -> Path:
    """Write `metric` and its per-quarter columns (metric_q0..q3) against `step` to the PNG `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric not in columns:
        metric = "loss"
    steps = columns["step"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, columns[metric], color="black", linewidth=2, label=f"{metric} (all t)")
    for quarter in QUARTERS:
        key = f"{metric}_{quarter}"
        if key in columns:
            ax.plot(steps, columns[key], linewidth=1, label=f"{metric}, t in quarter {quarter[1]}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--run", help="run folder: plots DIR/diffusion/log.csv")
    parser.add_argument("--log", help="a log.csv to plot instead")
    parser.add_argument("--metric", default="mse", help="column to plot with its quarters (mse, loss, ...)")
    parser.add_argument("--out", help="PNG to write (default: loss.png beside the log)")
    args = parser.parse_args(argv)
    if not (args.run or args.log):
        parser.error("give --run DIR or --log FILE")
    log = Path(args.log) if args.log else RunPaths(args.run).diffusion / "log.csv"
    try:
        columns = read_log(log)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    out = plot_log(columns, Path(args.out) if args.out else log.with_name("loss.png"), args.metric, str(log))
    print(f"{len(columns['step'])} logged steps up to step {columns['step'][-1]:.0f} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
