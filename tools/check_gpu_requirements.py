"""Resolve the GPU install (`make setup GPU=1`) with pip, without a GPU and without installing anything, and record
which CUDA each framework gets:  python tools/check_gpu_requirements.py  [--check]

The requirement set is pyproject.toml's: the base dependencies and the `all` and `gpu` extras (torch's CUDA build,
tensorflow[and-cuda], onnxruntime-gpu[cuda,cudnn]). pip resolves it for Linux x86_64 / CPython 3.11 from binary
wheels (`pip install --dry-run --report`, reading only the wheels' metadata) with this machine's pip settings
ignored. The result goes to tools/gpu_requirements.lock.json: every resolved package, and per framework the CUDA
major versions its own requirements name (a `-cuNN` package suffix, or the version of nvidia-cuda-runtime /
cuda-toolkit). torch and onnxruntime must share one major (onnxruntime loads torch's libraries); TensorFlow runs in
other processes and may have its own. --check only re-reads the lock and checks that rule (no network).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "tools" / "gpu_requirements.lock.json"
PYTHON = "3.11"
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)] + ["manylinux2014_x86_64"]
FRAMEWORKS = {"torch": "torch", "onnxruntime": "onnxruntime-gpu", "tensorflow": "tensorflow"}
VERSIONED_AS_CUDA = ("nvidia-cuda-runtime", "cuda-toolkit")  # packages whose version is the CUDA version


def requirement_set(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The base dependencies plus the extras a GPU install takes, expanded (self-references like
    `keras-torch-ldm[stage1]` replaced by that extra's list)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras, name = project["optional-dependencies"], project["name"]

    def expand(reqs: list[str]) -> list[str]:
        out = []
        for text in reqs:
            req = Requirement(text)
            out += expand([r for e in sorted(req.extras) for r in extras[e]]) if req.name == name else [text]
        return out

    return sorted(set(expand(project["dependencies"] + extras["all"] + extras["gpu"])))


def cuda_majors(metadata: dict, extras: set[str], versions: dict[str, str]) -> list[int]:
    """CUDA major versions that a package's active requirements name (see the module docstring)."""
    majors = set()
    for text in metadata.get("requires_dist", []):
        req = Requirement(text)
        env = {"platform_system": "Linux", "python_version": PYTHON, "sys_platform": "linux"}
        if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in extras | {""}):
            continue
        if match := re.search(r"-cu(\d+)$", req.name):
            majors.add(int(match.group(1)))
        elif req.name in VERSIONED_AS_CUDA and req.name in versions:
            majors.add(int(versions[req.name].split(".")[0]))
    return sorted(majors)


def summarise(report: dict, requirements: list[str]) -> dict:
    """The lock: the requirement set, every resolved package, the CUDA packages and each framework's majors."""
    versions = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
    by_name = {i["metadata"]["name"].lower(): i for i in report["install"]}
    majors = {}
    for label, dist in FRAMEWORKS.items():
        item = by_name[dist]
        majors[label] = cuda_majors(item["metadata"], set(item.get("requested_extras") or []), versions)
    cuda = {n: v for n, v in versions.items() if n.startswith(("nvidia-", "cuda-"))}
    return {"generated": time.strftime("%Y-%m-%d"), "python": PYTHON, "platform": "linux x86_64 (manylinux)",
            "pip": report.get("pip_version"), "requirements": requirements, "cuda_majors": majors,
            "cuda_packages": dict(sorted(cuda.items())), "packages": dict(sorted(versions.items()))}


def check(lock: dict) -> list[str]:
    """Problems with a lock (empty when torch and onnxruntime share exactly one CUDA major and TF has one)."""
    majors, problems = lock["cuda_majors"], []
    for label in FRAMEWORKS:
        if len(majors.get(label, [])) != 1:
            problems.append(f"{label} resolves to CUDA majors {majors.get(label)}: expected exactly one")
    if majors.get("torch") != majors.get("onnxruntime"):
        problems.append(f"torch (CUDA {majors.get('torch')}) and onnxruntime (CUDA {majors.get('onnxruntime')}) "
                        "differ: onnxruntime loads torch's CUDA libraries in the sampling process")
    return problems


def resolve(requirements: list[str]) -> dict:
    """pip's resolution report for `requirements` (metadata only: nothing is installed or fully downloaded)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--quiet",
                   "--report", str(report), "--python-version", PYTHON, "--only-binary=:all:",
                   *[f"--platform={p}" for p in PLATFORMS], *requirements]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"pip could not resolve the GPU requirement set:\n{proc.stderr[-3000:]}")
        return json.loads(report.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="check the committed lock only (no network)")
    args = p.parse_args(argv)
    if args.check:
        lock = json.loads(LOCK.read_text())
    else:
        requirements = requirement_set()
        lock = summarise(resolve(requirements), requirements)
        tmp = LOCK.with_suffix(".tmp")
        tmp.write_text(json.dumps(lock, indent=1) + "\n")
        tmp.replace(LOCK)  # atomic: a failed run leaves the previous lock
        print(f"wrote {LOCK.relative_to(ROOT)}: {len(lock['packages'])} packages")
    print("CUDA majors:", ", ".join(f"{k} {v}" for k, v in lock["cuda_majors"].items()))
    problems = check(lock)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
