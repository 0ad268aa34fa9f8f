"""pyproject.toml: a sampling-only install pulls no TensorFlow, and every stage script has a console entry point that
exits with the script's code."""

import importlib
import inspect
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
TENSORFLOW_SIDE = {"tensorflow", "keras", "tf2onnx", "onnx", "tf-keras"}


def names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name for r in requirements}


def test_the_base_install_samples_without_tensorflow():
    base = names(PROJECT["dependencies"])
    assert {"torch", "onnxruntime-gpu", "numpy", "safetensors", "pillow", "tqdm"} <= base
    assert not base & TENSORFLOW_SIDE
    assert PROJECT["optional-dependencies"]["sample"] == []  # `.[sample]` names the base install


def test_the_full_install_adds_stage1_and_export():
    extras = PROJECT["optional-dependencies"]
    assert {"tensorflow", "keras", "tf2onnx", "onnx"} <= names(extras["stage1"])
    assert Requirement(extras["all"][0]).extras == {"stage1", "tools"}
    assert {"torch", "onnxruntime-gpu", "tensorflow"} <= names(extras["gpu"])


def test_every_stage_script_has_an_entry_point_that_returns_an_exit_code():
    scripts = PROJECT["scripts"]
    stage_scripts = {p.stem for p in (ROOT / "pipelines").glob("*.py") if "def main(" in p.read_text()}
    targets = {value.split(":")[0] for value in scripts.values()}
    assert {f"pipelines.{s}" for s in stage_scripts} <= targets
    for name, value in scripts.items():
        module, func = value.split(":")
        fn = getattr(importlib.import_module(module), func)
        # console scripts run sys.exit(fn()): anything but an int (or None) would print itself and exit 1
        assert inspect.signature(fn).return_annotation in ("int", int), f"{name} -> {value} must return an int"
        assert name.startswith("ldm-")


def test_scripts_rely_on_the_install_not_on_sys_path_edits():
    """`make setup` installs the project (editable), so every script imports the packages the same way whether it is
    run as `python pipelines/X.py`, `python -m pipelines.X` or its `ldm-*` entry point: none edits sys.path."""
    edits = [str(p.relative_to(ROOT)) for p in (ROOT / "pipelines").rglob("*.py")
             if "sys.path.insert" in p.read_text() or "sys.path.append" in p.read_text()]
    assert edits == []
    import pipelines

    assert Path(pipelines.__file__).resolve().parent == ROOT / "pipelines"  # this checkout is what is installed
