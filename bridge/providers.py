"""Choosing the onnxruntime execution provider and opening sessions (torch + onnxruntime only, never TensorFlow).

torch is imported before onnxruntime on purpose: onnxruntime-gpu then finds the CUDA/cuDNN libraries that torch
already loaded (onnxruntime's documented order); `onnxruntime.preload_dlls()` covers the rest before a CUDA session.
"""

from __future__ import annotations

import os
from pathlib import Path

# torch must be imported before onnxruntime (see the module docstring)
# isort: off
import torch
import onnxruntime as ort

# isort: on

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")


class ProviderError(RuntimeError):
    """The execution provider asked for cannot be used here; the message says what is missing and what to install."""


def physical_cores() -> int:
    """Physical cores (hyper-threads share one core's FPU, so more intra-op threads than cores only contend)."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:  # psutil is a project dependency, but the runtime must not hinge on it
        cores = None
    return max(1, cores or os.cpu_count() or 1)


def cuda_missing() -> str | None:
    """Why the CUDA provider cannot be used here (what is missing and what to install), or None when it can."""
    if not torch.cuda.is_available():
        return (
            "torch sees no CUDA GPU (torch.cuda.is_available() is False): install a CUDA build of torch "
            "(https://pytorch.org/get-started/locally/) on a machine with an NVIDIA driver, or use --device cpu"
        )
    if CUDA_EP not in ort.get_available_providers():
        return (
            f"onnxruntime {ort.__version__} has no {CUDA_EP} (available: {ort.get_available_providers()}): "
            "`pip install onnxruntime-gpu` in place of `onnxruntime`, or use --device cpu"
        )
    return None


def resolve_provider(device: str) -> str:
    """"auto" -> CUDA when torch sees a GPU and onnxruntime has the CUDA provider, else CPU; "cpu"/"cuda" as told."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return CPU_EP
    missing = cuda_missing()
    if device == "cuda" and missing:
        raise ProviderError(f"--device cuda was asked for, but {missing}")
    return CPU_EP if missing else CUDA_EP


def session_options(intra_op_threads: int | None = None) -> ort.SessionOptions:
    """Full graph optimisation; intra-op threads = physical cores unless told otherwise."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads or physical_cores()
    return options


def open_session(
    path: Path, provider: str, device_id: int = 0, intra_op_threads: int | None = None
) -> ort.InferenceSession:
    """An InferenceSession on `provider`; raises when the provider really in use is not the one asked for.

    onnxruntime silently falls back to the CPU when the CUDA provider fails to load (missing libcudnn, driver too
    old), so the provider in use is read back from the session rather than assumed.
    """
    if provider == CUDA_EP:
        if hasattr(ort, "preload_dlls"):  # onnxruntime >= 1.21
            ort.preload_dlls()
        providers: list = [(CUDA_EP, {"device_id": device_id}), CPU_EP]
    else:
        providers = [CPU_EP]
    session = ort.InferenceSession(str(path), sess_options=session_options(intra_op_threads), providers=providers)
    in_use = session.get_providers()[0]
    if in_use != provider:
        raise ProviderError(
            f"onnxruntime opened {path.name} on {in_use}, not {provider}: the CUDA libraries onnxruntime "
            f"{ort.__version__} needs (1.31: CUDA 13 and cuDNN 9, as torch's CUDA build has them) did not load; "
            "install them (`make setup GPU=1`, or `pip install onnxruntime-gpu[cuda,cudnn]`) or use --device cpu"
        )
    return session
