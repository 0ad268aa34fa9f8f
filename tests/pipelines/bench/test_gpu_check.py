"""pipelines/bench/gpu_check.py: without a GPU it says so and checks nothing; with one, every stage's failure is
reported in the file and in the exit code (a fake `nvidia-smi` stands in for the driver on this CPU machine)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "pipelines" / "bench" / "gpu_check.py"


def run(tmp_path, path_dirs, *args):
    env = {**os.environ, "PATH": os.pathsep.join(map(str, path_dirs))}
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "gpu.md"), *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def fake_nvidia_smi(folder: Path, listing: str) -> Path:
    folder.mkdir()
    exe = folder / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    exe.chmod(0o755)
    return folder


def test_no_gpu_says_so_and_checks_nothing(tmp_path):
    proc = run(tmp_path, [Path(sys.executable).parent, "/usr/bin", "/bin"])
    assert proc.returncode == 0, proc.stderr
    assert "no GPU" in proc.stdout and "nothing was checked" in proc.stdout
    assert not (tmp_path / "gpu.md").exists()


def test_an_empty_gpu_listing_is_no_gpu(tmp_path):
    bin_dir = fake_nvidia_smi(tmp_path / "bin", "No devices were found\\n")
    proc = run(tmp_path, [bin_dir, "/usr/bin", "/bin"])
    assert proc.returncode == 0 and "no GPU" in proc.stdout


def test_unknown_stage_is_an_error(tmp_path):
    proc = run(tmp_path, ["/usr/bin", "/bin"], "--stages", "vae,warp")
    assert proc.returncode == 2 and "unknown stage(s) ['warp']" in proc.stderr


def test_a_failing_stage_is_reported(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a real GPU is present: the stages would pass")
    bin_dir = fake_nvidia_smi(tmp_path / "bin", "GPU 0: Fake GPU (UUID: GPU-0)\\n")
    proc = run(tmp_path, [bin_dir, Path(sys.executable).parent, "/usr/bin", "/bin"], "--stages", "stage2,sample")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED: stage2, sample" in proc.stdout
    report = (tmp_path / "gpu.md").read_text()
    assert "on GPU 0: Fake GPU" in report
    assert "**stage2: FAILED**" in report and "sees no GPU" in report  # the stage's own assertion message
