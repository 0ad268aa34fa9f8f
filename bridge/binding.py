"""Run an onnxruntime session on torch tensors in place: IOBinding by raw pointers, on the CPU or on CUDA.

No copy through host memory on CUDA, none at all on the CPU: onnxruntime reads the input tensors' memory and
writes straight into pre-allocated output tensors (torch + onnxruntime + numpy only).
"""

from __future__ import annotations

import numpy as np

# torch must be imported before onnxruntime (see bridge.providers)
# isort: off
import torch
import onnxruntime as ort

# isort: on

_NUMPY_DTYPES = {torch.float32: np.float32, torch.int64: np.int64}


def run_bound(session: ort.InferenceSession, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
    """Run `session` reading `inputs` and writing `outputs` (name -> tensor), all bound by their data pointers.

    Every tensor must be contiguous, of a dtype in _NUMPY_DTYPES, and on one device (CPU or one CUDA device); the
    caller keeps them alive for the call, so the raw pointers stay valid. onnxruntime runs on its own CUDA stream:
    torch's stream is synchronised before (the producer's kernels must have finished writing the inputs) and after
    (before torch reads the outputs).
    """
    tensors = list(inputs.values()) + list(outputs.values())
    device = tensors[0].device
    for t in tensors:
        if t.device != device or not t.is_contiguous() or t.dtype not in _NUMPY_DTYPES:
            raise ValueError(f"bound tensors must be contiguous {list(_NUMPY_DTYPES)} on {device}, got {t.dtype} "
                             f"on {t.device} (contiguous: {t.is_contiguous()})")
    device_type, device_id = ("cuda", device.index or 0) if device.type == "cuda" else ("cpu", 0)
    binding = session.io_binding()
    for bind, named in ((binding.bind_input, inputs), (binding.bind_output, outputs)):
        for name, t in named.items():
            bind(name=name, device_type=device_type, device_id=device_id, element_type=_NUMPY_DTYPES[t.dtype],
                 shape=tuple(t.shape), buffer_ptr=t.data_ptr())
    if device_type == "cuda":
        torch.cuda.synchronize(device)
    session.run_with_iobinding(binding)
    if device_type == "cuda":
        binding.synchronize_outputs()
        torch.cuda.synchronize(device)
