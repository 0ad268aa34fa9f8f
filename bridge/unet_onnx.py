"""The diffusion U-Net as ONNX: export from torch, and a callable with the U-Net's own signature for the samplers.

`export_unet_onnx` writes `model(x, timesteps, y=None)` with torch.onnx's exporter (dynamic batch; needs the
`onnxscript` package); `OnnxUNet(path, device)` is called exactly like the torch model, so the diffusion loops
can sample with onnxruntime alone (`pipelines/sample.py --backend onnx`). torch + onnxruntime only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# torch must be imported before onnxruntime (see bridge.providers)
# isort: off
import torch
import onnxruntime as ort  # noqa: F401  (the session type below)

# isort: on

from bridge.binding import run_bound
from bridge.providers import CUDA_EP, open_session, resolve_provider
from runfs import atomic_path

UNET_OPSET = 18  # torch.onnx's exporter writes opset-18 Split/Reduce forms; older opsets are converted imperfectly
_META_KEY = "unet"


def export_unet_onnx(
    model: torch.nn.Module,
    path: str | os.PathLike,
    example_shape: tuple[int, ...],
    num_classes: int | None,
    opset: int = UNET_OPSET,
    source: str | None = None,
) -> Path:
    """Export `model` (x [N, C, *S] float32, timesteps [N] float32, y [N] int64 when `num_classes`) to `path`.

    example_shape: (N, C, *S) of an example x; N >= 2 so that the batch axis is traced as dynamic. The file
    records num_classes and the input shape in its metadata, so OnnxUNet needs nothing else, and `source` (e.g. a
    digest of the weights file it was exported from: OnnxUNet.source), so that a cached export can be told stale.
    Written atomically.
    """
    if len(example_shape) < 3 or example_shape[0] < 2:
        raise ValueError(f"example_shape must be (N >= 2, C, *spatial), got {example_shape}")
    model = model.eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    n = example_shape[0]
    x = torch.randn(example_shape, device=device)
    timesteps = torch.linspace(0, 999, n, device=device)
    batch = torch.export.Dim("batch", min=1)
    args: tuple[torch.Tensor, ...] = (x, timesteps)
    names = ["x", "timesteps"]
    if num_classes is not None:
        args += (torch.arange(n, device=device) % num_classes,)
        names.append("y")
    dynamic_shapes = tuple({0: batch} for _ in args)
    with torch.no_grad():
        program = torch.onnx.export(
            model, args, input_names=names, output_names=["out"], dynamic_shapes=dynamic_shapes,
            opset_version=opset, dynamo=True, verbose=False,
        )
    program.model.metadata_props[_META_KEY] = json.dumps(
        {"num_classes": num_classes, "sample_shape": list(example_shape[1:]), "source": source}
    )
    path = Path(path)
    with atomic_path(path, suffix=".onnx") as tmp:
        program.save(tmp)
    return path


class OnnxUNet:
    """`unet(x, t, y=None) -> out` with onnxruntime: the same call as the exported torch U-Net.

    x: [N, C, *S] (any float dtype, on any device), t: [N] timesteps, y: [N] integer labels for a
    class-conditional model. Returns [N, C_out, *S] float32 on x's device.
    """

    def __init__(self, path: str | os.PathLike, device: str = "auto", intra_op_threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} does not exist: export the U-Net first (bridge.unet_onnx)")
        provider = resolve_provider(device)
        on_cuda = provider == CUDA_EP
        self.device = torch.device(f"cuda:{torch.cuda.current_device()}") if on_cuda else torch.device("cpu")
        self.session = open_session(self.path, provider, self.device.index or 0, intra_op_threads)
        self.provider = self.session.get_providers()[0]
        meta = json.loads(self.session.get_modelmeta().custom_metadata_map.get(_META_KEY, "{}"))
        if "sample_shape" not in meta:
            raise ValueError(f"{self.path} was not written by bridge.unet_onnx.export_unet_onnx (no U-Net metadata)")
        self.num_classes: int | None = meta["num_classes"]
        self.sample_shape = tuple(meta["sample_shape"])
        self.source: str | None = meta.get("source")  # what it was exported from (export_unet_onnx's `source`)
        self.out_shape = tuple(int(d) for d in self.session.get_outputs()[0].shape[1:])

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(f"x of shape {tuple(x.shape)} does not fit {self.path.name}: expected (N, "
                             f"{', '.join(map(str, self.sample_shape))})")
        n = len(x)
        if t.shape != (n,):
            raise ValueError(f"t must have shape [{n}] (one timestep per sample), got {list(t.shape)}")
        inputs = {
            "x": x.detach().to(self.device, torch.float32).contiguous(),
            "timesteps": t.detach().to(self.device, torch.float32).contiguous(),
        }
        if (y is None) != (self.num_classes is None):
            raise ValueError(
                f"{self.path.name} is " + ("unconditional: pass y=None" if self.num_classes is None else
                                           f"class-conditional (num_classes={self.num_classes}): pass labels y [N]")
            )
        if y is not None:
            if y.shape != (n,) or y.is_floating_point() or bool(((y < 0) | (y >= self.num_classes)).any()):
                raise ValueError(f"y must be {n} integer labels in [0, {self.num_classes - 1}], got {y.tolist()}")
            inputs["y"] = y.detach().to(self.device, torch.int64).contiguous()
        out = torch.empty((n, *self.out_shape), dtype=torch.float32, device=self.device)
        run_bound(self.session, inputs, {"out": out})
        return out.to(x.device)

    def __repr__(self) -> str:
        return f"OnnxUNet({self.path}, provider={self.provider}, num_classes={self.num_classes})"
