"""tools/check_gpu_requirements.py: the committed lock (pip's resolution of the GPU install, made with network by
the script) is current for pyproject.toml, and puts torch and onnxruntime on one CUDA major, TensorFlow on its own."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_gpu_requirements", ROOT / "tools" / "check_gpu_requirements.py")
gpu_req = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_req)
LOCK = json.loads(gpu_req.LOCK.read_text())


def test_lock_is_current_for_pyproject():
    rerun = "pins changed: rerun python tools/check_gpu_requirements.py"
    assert LOCK["requirements"] == gpu_req.requirement_set(), rerun


def test_torch_and_onnxruntime_share_one_cuda_major_tensorflow_has_its_own():
    majors = LOCK["cuda_majors"]
    assert majors["torch"] == majors["onnxruntime"] == [13]
    assert majors["tensorflow"] == [12]
    assert gpu_req.check(LOCK) == []
    assert LOCK["packages"]["torch"] == "2.13.0" and LOCK["packages"]["onnxruntime-gpu"] == "1.31.1"
    # both cuDNN builds are in the one environment; each process loads one
    assert {"nvidia-cudnn-cu13", "nvidia-cudnn-cu12"} <= LOCK["cuda_packages"].keys()


def test_check_names_a_mismatch():
    bad = {"cuda_majors": {"torch": [13], "onnxruntime": [12], "tensorflow": [12, 13]}}
    problems = gpu_req.check(bad)
    assert any("torch (CUDA [13]) and onnxruntime (CUDA [12]) differ" in p for p in problems)
    assert any("tensorflow resolves to CUDA majors [12, 13]" in p for p in problems)


def test_cuda_majors_reads_suffixes_runtime_versions_and_extras():
    metadata = {"requires_dist": ['nvidia-cudnn-cu12>=9; extra == "and-cuda"',
                                  'nvidia-cuda-runtime~=13.0; extra == "cuda"', "numpy>=1.26",
                                  'nvidia-nccl-cu11; platform_system == "Windows"']}
    versions = {"nvidia-cuda-runtime": "13.0.96"}
    assert gpu_req.cuda_majors(metadata, {"and-cuda"}, versions) == [12]
    assert gpu_req.cuda_majors(metadata, {"cuda"}, versions) == [13]
    assert gpu_req.cuda_majors(metadata, {"and-cuda", "cuda"}, versions) == [12, 13]
    assert gpu_req.cuda_majors(metadata, set(), versions) == []


def test_requirement_set_expands_the_self_referencing_extra():
    reqs = gpu_req.requirement_set()
    assert "tensorflow[and-cuda]==2.21.0" in reqs and "torch==2.13.0" in reqs and "tf2onnx==1.17.0" in reqs
    assert not any(r.startswith("keras-torch-ldm") for r in reqs)
