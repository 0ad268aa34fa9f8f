"""Two CUDA stacks, one per process: every script under pipelines/ keeps to its side (docs/gpu.md).

Stage-1 scripts (TensorFlow: CUDA 12) never import torch; stage-2, sampling and the torch benchmarks (torch and
onnxruntime: CUDA 13) never import TensorFlow, Keras or tf2onnx. Each script runs in a fresh interpreter whose
import system refuses the other side's packages (a meta-path blocker, so even an import that would be caught and
ignored is seen): first `--help` (the script's module-level imports), then every module the script imports
inside its functions (its deferred imports, which `--help` never reaches). Then no module of the other side may
be in sys.modules. (Finding a package is allowed: torch's compiler asks importlib whether TensorFlow is installed
without importing it.)
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TORCH = ("torch",)
TENSORFLOW = ("tensorflow", "keras", "tf_keras", "tf2onnx")

# script -> the packages its process must never import
STAGE1 = {s: TORCH for s in ("train_vae", "encode", "export", "tune_decoder", "bench/vae_steps",
                             "bench/export_decoders", "bench/data_scale", "bench/data_throughput")}
STAGE2 = {s: TENSORFLOW for s in (
    "train_diffusion", "train_classifier", "sample", "package_run", "evaluate", "tune_guidance", "plot_log",
    "demo", "bench/latent_vs_pixel", "bench/worker", "bench/train_steps", "bench/unet_modes", "bench/gpu_check",
    "bench/validate_estimate")}
# Scripts whose own process imports neither side (they run the stages as child processes).
NEITHER = {s: TORCH + TENSORFLOW for s in ("fault_injection",)}
# Scripts that hold both sides on purpose, with the reason (a new script must be classified above or here).
BOTH = {"bench/decode_engines": "times Keras predict against onnxruntime on the same decoder, on the CPU",
        "bench/gpu_stages": "one stage per process: `vae` imports TensorFlow alone, the others torch alone"}
SCRIPTS = {**STAGE1, **STAGE2, **NEITHER}

BLOCKER = """
import importlib.abc, runpy, sys
FORBIDDEN = set(sys.argv[1].split(","))
class Refuse(importlib.abc.Loader):
    def create_module(self, spec):
        raise ImportError(f"IMPORT-SEPARATION: {spec.name} imported")
    def exec_module(self, module):
        pass
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in FORBIDDEN:
            return None
        for finder in sys.meta_path[1:]:  # the real spec (its origin), with a loader that refuses to load it
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                spec.loader = Refuse()
                return spec
        return None
sys.meta_path.insert(0, Blocker())
script, deferred = sys.argv[2], [m for m in sys.argv[3].split(",") if m]
sys.argv = [script, "--help"]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit:
    pass
for module in deferred:
    __import__(module)
print("OK", sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN))
"""


def script_path(name: str) -> Path:
    return ROOT / "pipelines" / f"{name}.py"


def deferred_imports(path: Path) -> list[str]:
    """Project modules the script imports inside its functions (imports below module level)."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    found = set()
    for node in ast.walk(tree):
        if id(node) in top_level:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    project = ("vae", "diffusion", "bridge", "pipelines", "runfs")
    return sorted(m for m in found if m.split(".")[0] in project)


def test_every_script_is_classified():
    scripts = {str(p.relative_to(ROOT / "pipelines").with_suffix("")) for p in (ROOT / "pipelines").rglob("*.py")
               if '__name__ == "__main__"' in p.read_text()}
    assert scripts == set(SCRIPTS) | set(BOTH), "classify each script in STAGE1, STAGE2 or BOTH (with a reason)"


def test_deferred_imports_are_found():
    # train_vae.py defers Keras to main() so that --help is fast: the test must see what --help does not reach.
    assert "vae.train" in deferred_imports(script_path("train_vae"))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_imports_only_its_side(name):
    forbidden = SCRIPTS[name]
    path = script_path(name)
    proc = subprocess.run([sys.executable, "-c", BLOCKER, ",".join(forbidden), str(path),
                           ",".join(deferred_imports(path))], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "IMPORT-SEPARATION" not in proc.stderr, f"{name} imports {forbidden}: {proc.stderr[-1500:]}"
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "OK []" in proc.stdout, proc.stdout


def test_gpu_stages_imports_each_side_only_inside_its_stage():
    path = script_path("bench/gpu_stages")
    proc = subprocess.run([sys.executable, "-c", BLOCKER, ",".join(TORCH + TENSORFLOW), str(path), "runfs"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1) and "IMPORT-SEPARATION" not in proc.stderr, proc.stderr[-1500:]


def test_the_blocker_catches_a_forbidden_import(tmp_path):
    script = tmp_path / "mixed.py"
    script.write_text("import argparse\n\ndef main():\n    import vae.trainer\n\n"
                      "if __name__ == '__main__':\n    argparse.ArgumentParser().parse_args()\n")
    proc = subprocess.run([sys.executable, "-c", BLOCKER, "keras", str(script), "vae.trainer"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "IMPORT-SEPARATION: keras" in proc.stderr
