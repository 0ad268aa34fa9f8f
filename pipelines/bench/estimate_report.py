"""`latent_vs_pixel.py --estimate`: GPU memory of pixel vs latent training and sampling by simulation
(`estimate.py`), the largest microbatch under each budget, and checkpoint sizes, for one model at several resolutions.

Each case is simulated at batches 8 and 16; from there up every activation is alive at the start of the backward
pass and the peak is the line through them (`LinearFit`); the optimizer phase's peak does not depend on the batch.
The largest microbatch is where the line, with the stated allocator assumptions (`estimate.ASSUMPTIONS`), meets
the budget; an answer below 8 is checked by simulating it. Batch 1 is simulated as well (the table's column).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from diffusion.config import DiffusionConfig, UNetConfig
from pipelines.bench.cases import unet_at
from pipelines.bench.checkpoint_size import checkpoint_size
from pipelines.bench.estimate import ASSUMPTIONS, GIB, Estimate, LinearFit, device_bytes, sample_step, train_step
from pipelines.bench.reference_models import model
from runfs import atomic_path, write_json

FIT_BATCHES = (8, 16)  # training and sampling are simulated here; the line runs through them


def estimate_cases(name: str, sizes: tuple[int, ...], factors: tuple[int, ...], z_channels: int = 4
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """([{label, size, space, factor, unet}], skipped): the model in pixel space and on f x f smaller latents at
    each output size, with the same widths per level and attention at the same rates (`cases.unet_at`)."""
    base, _ = model(name)
    cases, skipped = [], []
    for size in sizes:
        for factor in (1, *factors):
            label = f"{size}px pixel" if factor == 1 else f"{size}px latent f={factor}"
            try:
                if size % factor:
                    raise ValueError(f"{size} is not divisible by {factor}")
                channels = base.in_channels if factor == 1 else z_channels
                cases.append({"label": label, "size": size, "space": "pixel" if factor == 1 else "latent",
                              "factor": factor, "unet": unet_at(base, size // factor, channels)})
            except ValueError as err:
                skipped.append(f"{label}: {err}")
    return cases, skipped


def estimate_case(unet: UNetConfig, diffusion: DiffusionConfig, precision: str, budgets_gib: tuple[float, ...],
                  sample_batch: int, ema_copies: int = 1) -> dict[str, Any]:
    """Training and sampling memory of one U-Net, its largest microbatch per budget and its checkpoint size."""
    train: dict[int, Estimate] = {}

    def peak(batch: int) -> int:
        if batch not in train:
            train[batch] = train_step(unet, diffusion, batch, precision, ema_copies)
        return train[batch].peak_bytes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MemTracker's hooks warn about modules freed between iterations
        for batch in (1, *FIT_BATCHES):
            peak(batch)
        line = LinearFit.through(*((b, train[b].activation_peak) for b in FIT_BATCHES))
        update = max(t.update_peak for t in train.values())  # the optimizer phase: batch-free
        max_batch = {f"{budget:g}": largest_microbatch(line, update, budget * GIB, peak) for budget in budgets_gib}
        sample = {b: sample_step(unet, diffusion, b, precision) for b in sorted({*FIT_BATCHES, sample_batch})}
    sample_line = LinearFit.through(*((b, sample[b].peak_bytes) for b in FIT_BATCHES))
    size = checkpoint_size(unet, ema_copies)
    return {"params": train[1].params, "train_fixed_bytes": line.fixed, "train_per_item_bytes": line.per_item,
            "update_peak_bytes": update, "train_at_peak": train[FIT_BATCHES[-1]].at_peak,
            "train_peak_bytes": {str(b): t.peak_bytes for b, t in sorted(train.items())},
            "sample_fixed_bytes": sample_line.fixed, "sample_per_item_bytes": sample_line.per_item,
            "sample_peak_bytes": sample[sample_batch].peak_bytes, "max_microbatch": max_batch,
            "checkpoint_bytes": size.total, "checkpoint_files": {"model": size.model, "ema_each": size.ema_each,
                                                                 "optimizer": size.optimizer}}


def largest_microbatch(line: LinearFit, update_peak: int, budget: float, peak: Callable[[int], int]) -> int:
    """The largest batch whose device bytes fit `budget`. From `FIT_BATCHES[0]` up, the peak is the line (the
    start of the backward pass, every activation alive). Below, the peak can sit elsewhere (gradients already
    allocated while activations remain), above the line: there the answer is checked by simulating (`peak`)."""
    if device_bytes(update_peak) > budget:
        return 0
    batch = line.max_batch(budget)
    if batch >= FIT_BATCHES[0]:
        return batch
    while batch >= 1 and device_bytes(peak(batch)) > budget:
        batch -= 1
    return batch


def run_estimate(name: str, sizes: tuple[int, ...], factors: tuple[int, ...], precisions: tuple[str, ...],
                 budgets_gib: tuple[float, ...], sample_batch: int = 16, ema_copies: int = 1,
                 progress: bool = True) -> dict[str, Any]:
    """The report dict of every (case, precision)."""
    cases, skipped = estimate_cases(name, sizes, factors)
    _, diffusion = model(name)
    rows = []
    jobs = [(c, p) for c in cases for p in precisions]
    for case, precision in tqdm(jobs, desc="estimate", disable=not progress):
        figures = estimate_case(case["unet"], diffusion, precision, budgets_gib, sample_batch, ema_copies)
        rows.append({**{k: v for k, v in case.items() if k != "unet"}, "precision": precision,
                     "unet": case["unet"].to_dict(), **figures})
    return {"model": name, "sizes": list(sizes), "factors": list(factors), "budgets_gib": list(budgets_gib),
            "sample_batch": sample_batch, "ema_copies": ema_copies, "optimizer": "AdamW", "assumptions": ASSUMPTIONS,
            "fit_batches": list(FIT_BATCHES), "cases": rows, "skipped": skipped}


def _gib(value: float) -> str:
    return f"{value / GIB:.2f}"


def markdown(report: dict[str, Any]) -> str:
    """One row per case and precision: parameters, training memory, sampling memory, max microbatch, checkpoint."""
    budgets = [f"{b:g}" for b in report["budgets_gib"]]
    lines = [f"Model {report['model']}: AdamW, {report['ema_copies']} EMA copy, steady-state (second) training step; "
             f"sampling: one DDIM step at batch {report['sample_batch']}, weights only. Memory = what torch's "
             f"allocator is asked for (max_memory_allocated); the budget columns add the CUDA context "
             f"({ASSUMPTIONS['cuda_context_bytes'] / 2**20:.0f} MiB) and a reserve factor of "
             f"{ASSUMPTIONS['reserve_factor']}.", "",
             "| case | precision | params M | train GiB: fixed + per item | train GiB at microbatch 1 / 8 | "
             "sample GiB | " + " | ".join(f"max microbatch in {b} GiB" for b in budgets) + " | checkpoint GB |",
             "|---|---|---|---|---|---|" + "---|" * len(budgets) + "---|"]
    for r in report["cases"]:
        peaks = r["train_peak_bytes"]
        lines.append(f"| {r['label']} | {r['precision']} | {r['params'] / 1e6:.1f} | "
                     f"{_gib(r['train_fixed_bytes'])} + {_gib(r['train_per_item_bytes'])} | "
                     f"{_gib(peaks['1'])} / {_gib(peaks['8'])} | {_gib(r['sample_peak_bytes'])} | "
                     + " | ".join(str(r["max_microbatch"][b]) for b in budgets)
                     + f" | {r['checkpoint_bytes'] / 1e9:.2f} |")
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path, budget_gib: float) -> None:
    """Largest microbatch in `budget_gib` and training memory at microbatch 8 vs resolution, per space."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for precision in sorted({r["precision"] for r in report["cases"]}):
        for factor in sorted({r["factor"] for r in report["cases"]}):
            rows = [r for r in report["cases"] if r["factor"] == factor and r["precision"] == precision]
            label = ("pixel" if factor == 1 else f"latent f={factor}") + f" {precision}"
            sizes = [r["size"] for r in rows]
            axes[0].plot(sizes, [max(r["max_microbatch"][f"{budget_gib:g}"], 0.5) for r in rows], marker="o",
                         label=label)
            axes[1].plot(sizes, [r["train_peak_bytes"]["8"] / GIB for r in rows], marker="o", label=label)
    axes[0].set(title=f"largest training microbatch in {budget_gib:g} GiB (0 drawn at 0.5)", yscale="log")
    axes[1].set(title="training memory at microbatch 8 (GiB allocated)", yscale="log")
    for ax in axes:
        ax.set(xscale="log", xlabel="output resolution (px)")
        ax.set_xticks(report["sizes"], labels=[str(s) for s in report["sizes"]])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['model']}: pixel vs latent, simulated (FakeTensorMode + MemTracker)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_estimate(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """estimate.json, estimate.md and estimate.png in `out_dir`, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "estimate.json", "md": out_dir / "estimate.md", "plot": out_dir / "estimate.png"}
    write_json(paths["json"], report)
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(f"# Memory estimate: {report['model']}\n\n" + markdown(report))
    plot(report, paths["plot"], report["budgets_gib"][0])
    return paths

