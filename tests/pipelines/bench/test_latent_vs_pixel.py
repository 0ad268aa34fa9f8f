"""pipelines/bench/latent_vs_pixel.py end to end at toy size, in a fresh interpreter (so TensorFlow imports are
visible)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.bench.latent_vs_pixel import budget_list, main, parse_budget

REPO = Path(__file__).resolve().parents[3]
CASE_FIELDS = {"name", "size", "space", "factor", "input_shape", "unet", "decoder", "train", "sample", "params",
               "max_batch"}


def test_report_has_every_field_oom_recorded_and_no_tensorflow(tiny_pipeline_run, tmp_path):
    out = tmp_path / "bench"
    args = ["--run", str(tiny_pipeline_run), "--out", str(out), "--sizes", "16", "--factors", "4",
            "--batch-size", "2", "--sample-batch", "2", "--steps", "2", "--repeats", "1", "--warmup", "0",
            "--device", "cpu", "--search", "real", "--inject-oom-batch", "3", "--no-progress"]
    code = ("import sys; from pipelines.bench.latent_vs_pixel import main; rc = main(sys.argv[1:]); "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')], 'TF imported'; "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert {"config", "machine", "cases", "ratios", "skipped", "memory_measure"} <= report.keys()
    assert {"cpu", "logical_cores", "gpu", "versions"} <= report["machine"].keys()
    assert [c["name"] for c in report["cases"]] == ["16px-pixel", "16px-latent-f4"]
    for case in report["cases"]:
        assert CASE_FIELDS <= case.keys()
        assert case["train"]["status"] == "ok" and case["train"]["seconds"] > 0 and case["train"]["peak_bytes"] > 0
        assert case["sample"]["status"] == "ok" and case["sample"]["end_to_end_seconds"] > 0
        assert not case["train"]["tensorflow_imported"] and not case["sample"]["tensorflow_imported"]
        # the injected OOM at batch 3 bounds the real search: recorded, not a crash
        assert case["max_batch"]["max_batch"] == 2 and case["max_batch"]["failed_batch"] == 3
    latent = report["cases"][1]
    assert latent["decoder"]["source"].startswith("trained decoder") and latent["sample"]["decode_seconds"] > 0
    assert report["ratios"][0]["train_speedup"] > 0
    assert "OOM at 3" in (out / "report.md").read_text() and "OOM at 3" in proc.stdout
    assert (out / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_budget_parsing_and_message():
    assert budget_list("16GiB,80GiB") == (16, 80)
    assert parse_budget("16GiB") == 16 and parse_budget("512MiB") == 0.5 and parse_budget("2") == 2
    with pytest.raises(Exception, match="write a size like 16GiB"):
        parse_budget("lots")


def test_cuda_without_gpu_is_a_clear_error(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert main(["--device", "cuda", "--out", str(tmp_path), "--sizes", "16", "--no-progress"]) == 2
    assert "torch sees no GPU" in capsys.readouterr().err


def test_estimate_writes_a_report_and_imports_no_tensorflow(tmp_path):
    out = tmp_path / "estimate"
    args = ["--estimate", "--preset", "fmnist-latent", "--sizes", "16", "--factors", "4", "--precisions", "fp32",
            "--budget", "1GiB,2GiB", "--out", str(out), "--no-progress"]
    code = ("import sys; from pipelines.bench.latent_vs_pixel import main; rc = main(sys.argv[1:]); "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')], 'TF imported'; "
            "sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "estimate.json").read_text())
    assert [c["label"] for c in report["cases"]] == ["16px pixel", "16px latent f=4"]
    for case in report["cases"]:
        assert set(case["max_microbatch"]) == {"1", "2"}
        assert case["max_microbatch"]["2"] >= case["max_microbatch"]["1"] > 0
        assert case["train_peak_bytes"]["8"] >= case["train_peak_bytes"]["1"] > 4 * 4 * case["params"]
    assert "max microbatch in 2 GiB" in (out / "estimate.md").read_text()
    assert (out / "estimate.png").read_bytes()[:4] == b"\x89PNG"


def test_estimate_rejects_a_bad_precision(tmp_path, capsys):
    assert main(["--estimate", "--precisions", "fp16", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--precisions takes fp32 and/or bf16" in capsys.readouterr().err


def test_guided_configurations_are_for_the_estimate_only(tmp_path, capsys):
    assert main(["--preset", "guided128", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "is for --estimate only" in capsys.readouterr().err
