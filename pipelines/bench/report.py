"""Write a benchmark report: a markdown table (stdout and report.md), report.json and a log-scale PNG plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runfs import atomic_path, write_json

MIB = 1024**2


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _status(result: dict) -> str:
    status = result.get("status", "?")
    if status == "oom":
        return f"OOM at batch {result.get('batch')}"
    return status


def _max_batch(mb: dict) -> str:
    if mb.get("status", "ok") != "ok":
        return f"{mb.get('status')} at batch {mb.get('failed_batch')}"
    text = str(mb["max_batch"]) + ("+ (cap)" if mb.get("capped") else "")
    if mb.get("failed_batch") is not None:
        text += f" ({mb['failure'].split(':')[0]} at {mb['failed_batch']})"
    return text + (" est." if mb.get("method") == "linear fit" else "")


def markdown(report: dict[str, Any]) -> str:
    """The cases table, the ratio table and the machine line, as markdown."""
    cfg, m = report["config"], report["machine"]
    ort_version = m["versions"].get("onnxruntime-gpu") or m["versions"].get("onnxruntime")
    lines = [
        f"Machine: {m['cpu']}, {m['logical_cores']} logical cores, {m['memory_gib']} GiB, GPU: {m['gpu'] or 'none'};"
        f" torch {m['versions'].get('torch')}, onnxruntime {ort_version}",
        f"Preset {cfg['preset']}, device {cfg['device']}, train batch {cfg['batch_size']}, sample batch "
        f"{cfg['sample_batch']}, {cfg['steps']} DDIM steps, median of {cfg['repeats']} after {cfg['warmup']} "
        f"warm-up; memory = {report['memory_measure']}; budget {cfg['budget_gib']} GiB; load average "
        f"{report.get('load_average_before')} before, {m.get('load_average')} after (timings need an idle machine)",
        "",
        "| case | input CxHxW | params | train s/step | train peak MiB | 1 step s | decode s | "
        f"{cfg['steps']} steps + decode s | sample peak MiB | max train batch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["cases"]:
        tr, sa = r["train"], r["sample"]
        lines.append(
            f"| {r['name']} | {'x'.join(map(str, r['input_shape']))} | {_num(r['params'], ',')} | "
            f"{_num(tr.get('seconds'), '.4f') if tr['status'] == 'ok' else _status(tr)} | "
            f"{_num(tr.get('peak_bytes', 0) / MIB if tr['status'] == 'ok' else None, '.0f')} | "
            f"{_num(sa.get('step_seconds'), '.4f') if sa['status'] == 'ok' else _status(sa)} | "
            f"{_num(sa.get('decode_seconds'), '.4f')} | {_num(sa.get('end_to_end_seconds'), '.3f')} | "
            f"{_num(sa.get('peak_bytes', 0) / MIB if sa['status'] == 'ok' else None, '.0f')} | "
            f"{_max_batch(r['max_batch'])} |")
    lines += ["", "| size | f | train speed-up | train memory ratio | 1-step speed-up | end-to-end speed-up "
              "(incl. decode) | sample memory ratio |", "|---|---|---|---|---|---|---|"]
    for q in report["ratios"]:
        lines.append(f"| {q['size']} | {q['factor']} | {_num(q['train_speedup'], '.1f')}x | "
                     f"{_num(q['train_memory_ratio'], '.1f')}x | {_num(q['step_speedup'], '.1f')}x | "
                     f"{_num(q['sample_e2e_speedup'], '.1f')}x | {_num(q['sample_memory_ratio'], '.1f')}x |")
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(report["skipped"])]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Train memory, train time and end-to-end sampling time vs resolution, one line per space, log y axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("train", "peak_bytes", MIB, "train peak memory (MiB)"), ("train", "seconds", 1, "train step (s)"),
              ("sample", "end_to_end_seconds", 1, "sampling incl. decode (s)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    labels = sorted({(r["space"], r["factor"]) for r in report["cases"]})
    for ax, (task, key, unit, title) in zip(axes, panels, strict=True):
        for space, factor in labels:
            rows = [r for r in report["cases"] if (r["space"], r["factor"]) == (space, factor)
                    and r[task].get("status") == "ok"]
            ax.plot([r["size"] for r in rows], [r[task][key] / unit for r in rows], marker="o",
                    label="pixel" if space == "pixel" else f"latent f={factor}")
        ax.set(xscale="log", yscale="log", xlabel="output resolution (px)", title=title)
        ax.set_xticks(sorted({r["size"] for r in report["cases"]}), labels=None)
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())  # only the measured sizes
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """report.json, report.md and plot.png in `out_dir`, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "plot": out_dir / "plot.png"}
    write_json(paths["json"], report)
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text("# Latent vs pixel space\n\n" + markdown(report))
    plot(report, paths["plot"])
    return paths
