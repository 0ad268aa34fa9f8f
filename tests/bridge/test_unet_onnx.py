"""U-Net -> ONNX: onnxruntime reproduces the torch U-Net through the same call, batch sizes vary, errors are clear."""

from __future__ import annotations

import pytest
import torch

from bridge.unet_onnx import OnnxUNet, export_unet_onnx

pytest.importorskip("onnxscript", reason="torch.onnx's exporter needs onnxscript (a project dependency)")


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    from diffusion.unet import UNetModel

    torch.manual_seed(0)
    model = UNetModel(image_size=8, in_channels=2, model_channels=32, out_channels=4, num_res_blocks=1,
                      attention_resolutions=(2,), channel_mult=(1, 2), num_classes=3, num_heads=2).eval()
    # The reference zero-initialises the last conv of every block (the output, the time/label path's effect):
    # random values there make the parity check, and the label's influence, meaningful.
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(std=0.1)
    path = export_unet_onnx(model, tmp_path_factory.mktemp("unet") / "unet.onnx", (2, 2, 8, 8), num_classes=3)
    return model, OnnxUNet(path, device="cpu")


def test_conditional_unet_parity_at_other_batch_sizes(conditional):
    model, onnx_unet = conditional
    assert onnx_unet.provider == "CPUExecutionProvider" and onnx_unet.num_classes == 3
    for n in (1, 5):
        x = torch.randn(n, 2, 8, 8)
        t = torch.randint(0, 1000, (n,))  # integer timesteps, as the respaced loops pass them
        y = torch.randint(0, 3, (n,))
        with torch.no_grad():
            want = model(x, t, y)
        got = onnx_unet(x, t, y)
        assert got.shape == want.shape == (n, 4, 8, 8)
        assert torch.max(torch.abs(got - want)) <= 1e-4
        assert torch.max(torch.abs(got - onnx_unet(x, t, (y + 1) % 3))) > 1e-4  # the label is really used


def test_unconditional_net_with_the_unet_signature(tmp_path):
    class Tiny(torch.nn.Module):  # same call as UNetModel: forward(x, timesteps, y=None)
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x, timesteps, y=None):
            return self.conv(x) * torch.cos(timesteps / 1000)[:, None, None, None]

    torch.manual_seed(1)
    model = Tiny().eval()
    unet = OnnxUNet(export_unet_onnx(model, tmp_path / "u.onnx", (2, 3, 4, 4), None), device="cpu")
    x, t = torch.randn(3, 3, 4, 4), torch.tensor([0.0, 250.5, 999.0])
    with torch.no_grad():
        assert torch.max(torch.abs(unet(x, t) - model(x, t))) <= 1e-5
    with pytest.raises(ValueError, match=r"u.onnx is unconditional: pass y=None"):
        unet(x, t, torch.zeros(3, dtype=torch.int64))


def test_call_errors(conditional, tmp_path):
    _, unet = conditional
    x, t = torch.randn(2, 2, 8, 8), torch.tensor([1, 2])
    with pytest.raises(ValueError, match=r"class-conditional \(num_classes=3\): pass labels y"):
        unet(x, t)
    with pytest.raises(ValueError, match=r"y must be 2 integer labels in \[0, 2\], got \[0, 3\]"):
        unet(x, t, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"expected \(N, 2, 8, 8\)"):
        unet(torch.randn(2, 8, 8, 2), t, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"t must have shape \[2\]"):
        unet(x, torch.tensor([1]), torch.tensor([0, 1]))
    with pytest.raises(FileNotFoundError, match=r"missing.onnx does not exist: export the U-Net first"):
        OnnxUNet(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match=r"example_shape must be \(N >= 2, C, \*spatial\)"):
        export_unet_onnx(torch.nn.Identity(), tmp_path / "x.onnx", (1, 2, 8, 8), None)
