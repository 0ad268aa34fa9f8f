"""UNetModel / EncoderUNetModel: reference parameter names and shapes, round trips, checkpointing, errors."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffusion.unet import EncoderUNetModel, UNetModel

SMALL = dict(image_size=8, in_channels=4, model_channels=32, out_channels=4, num_res_blocks=1,
             attention_resolutions=(2,), channel_mult=(1, 2), num_classes=3)


def resblock(prefix: str, cin: int, cout: int, emb: int = 128, scale_shift: bool = False) -> dict:
    """Keys and shapes of the reference's ResBlock (in_layers, emb_layers, out_layers, skip_connection)."""
    keys = {f"{prefix}.in_layers.0.weight": (cin,), f"{prefix}.in_layers.0.bias": (cin,),
            f"{prefix}.in_layers.2.weight": (cout, cin, 3, 3), f"{prefix}.in_layers.2.bias": (cout,),
            f"{prefix}.emb_layers.1.weight": ((2 if scale_shift else 1) * cout, emb),
            f"{prefix}.emb_layers.1.bias": ((2 if scale_shift else 1) * cout,),
            f"{prefix}.out_layers.0.weight": (cout,), f"{prefix}.out_layers.0.bias": (cout,),
            f"{prefix}.out_layers.3.weight": (cout, cout, 3, 3), f"{prefix}.out_layers.3.bias": (cout,)}
    if cin != cout:
        keys |= {f"{prefix}.skip_connection.weight": (cout, cin, 1, 1), f"{prefix}.skip_connection.bias": (cout,)}
    return keys


def attention(prefix: str, ch: int) -> dict:
    return {f"{prefix}.norm.weight": (ch,), f"{prefix}.norm.bias": (ch,), f"{prefix}.qkv.weight": (3 * ch, ch, 1),
            f"{prefix}.qkv.bias": (3 * ch,), f"{prefix}.proj_out.weight": (ch, ch, 1), f"{prefix}.proj_out.bias": (ch,)}


def conv(prefix: str, cout: int, cin: int, k: int = 3) -> dict:
    return {f"{prefix}.weight": (cout, cin, k, k), f"{prefix}.bias": (cout,)}


def expected_small_keys() -> dict:
    """Derived by hand from guided_diffusion/unet.py for SMALL (widths 32, 64; attention at ds=2)."""
    keys = {"time_embed.0.weight": (128, 32), "time_embed.0.bias": (128,), "time_embed.2.weight": (128, 128),
            "time_embed.2.bias": (128,), "label_emb.weight": (3, 128)}
    keys |= conv("input_blocks.0.0", 32, 4) | resblock("input_blocks.1.0", 32, 32)
    keys |= conv("input_blocks.2.0.op", 32, 32)  # Downsample with conv_resample
    keys |= resblock("input_blocks.3.0", 32, 64) | attention("input_blocks.3.1", 64)
    keys |= resblock("middle_block.0", 64, 64) | attention("middle_block.1", 64) | resblock("middle_block.2", 64, 64)
    keys |= resblock("output_blocks.0.0", 128, 64) | attention("output_blocks.0.1", 64)  # skip from input_blocks.3
    keys |= resblock("output_blocks.1.0", 96, 64) | attention("output_blocks.1.1", 64)  # skip from the downsample
    keys |= conv("output_blocks.1.2.conv", 64, 64)  # Upsample
    keys |= resblock("output_blocks.2.0", 96, 32) | resblock("output_blocks.3.0", 64, 32)
    keys |= {"out.0.weight": (32,), "out.0.bias": (32,)} | conv("out.2", 4, 32)
    return keys


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Replace the reference's zero init by noise so outputs depend on every parameter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def inputs(n: int = 2, channels: int = 4, size: int = 8):
    torch.manual_seed(1)
    return torch.randn(n, channels, size, size), torch.tensor([3.0, 999.0][:n] + [10.0] * (n - 2)), torch.arange(n) % 3


def test_parameter_names_and_shapes_match_reference():
    got = {k: tuple(v.shape) for k, v in UNetModel(**SMALL).state_dict().items()}
    assert got == expected_small_keys()


def test_resblock_updown_and_scale_shift_names():
    model = UNetModel(**SMALL, resblock_updown=True, use_scale_shift_norm=True)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in (resblock("input_blocks.2.0", 32, 32, scale_shift=True)
                       | resblock("output_blocks.1.2", 64, 64, scale_shift=True)).items():
        assert got[key] == shape
    assert not any(k.startswith(("input_blocks.2.0.op", "output_blocks.1.2.conv")) for k in got)


@pytest.mark.parametrize("size,mult", [(8, (1, 2)), (16, (1, 2, 2)), (32, (1, 2, 2, 2)), (64, (1, 2, 3, 4))])
def test_output_shape_for_image_sizes(size, mult):
    model = UNetModel(size, 3, 32, 6, 1, (2,), channel_mult=mult, num_head_channels=32)
    x = torch.randn(2, 3, size, size)
    assert model(x, torch.tensor([0, 500])).shape == (2, 6, size, size)


def test_dims_1_shape():
    model = UNetModel(16, 2, 32, 2, 1, (2,), channel_mult=(1, 2), dims=1)
    assert model(torch.randn(3, 2, 16), torch.tensor([1, 2, 3])).shape == (3, 2, 16)


def test_safetensors_round_trip_gives_identical_outputs(tmp_path):
    model = randomize(UNetModel(**SMALL, use_new_attention_order=True), seed=0).eval()
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    other = randomize(UNetModel(**SMALL, use_new_attention_order=True), seed=1).eval()
    x, t, y = inputs()
    assert not torch.equal(other(x, t, y), model(x, t, y))
    other.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=True)
    assert torch.equal(other(x, t, y), model(x, t, y))


def test_checkpointing_gives_same_outputs_and_gradients():
    plain = randomize(UNetModel(**SMALL, use_scale_shift_norm=True, resblock_updown=True), seed=0)
    ckpt = UNetModel(**SMALL, use_scale_shift_norm=True, resblock_updown=True, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    results = []
    for model in (plain, ckpt):
        x, t, y = inputs()
        x.requires_grad_(True)
        model(x, t, y).square().sum().backward()
        results.append((model(x, t, y).detach(), x.grad, {k: p.grad for k, p in model.named_parameters()}))
    (out_a, gx_a, g_a), (out_b, gx_b, g_b) = results
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)
    torch.testing.assert_close(gx_a, gx_b)
    assert g_a.keys() == g_b.keys() and all(g_a[k] is not None for k in g_a)
    for k in g_a:
        torch.testing.assert_close(g_a[k], g_b[k], msg=k)


def test_label_errors():
    x, t, y = inputs()
    with pytest.raises(ValueError, match=r"unconditional \(num_classes=None\) but y was given"):
        UNetModel(**{**SMALL, "num_classes": None})(x, t, y)
    model = UNetModel(**SMALL)
    with pytest.raises(ValueError, match=r"needs y: .* labels in \[0, 2\]"):
        model(x, t)
    with pytest.raises(ValueError, match=r"labels \[3\] are out of range: valid labels are 0\.\.2"):
        model(x, t, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"y must have shape \[2\]"):
        model(x, t, torch.tensor([0]))
    with pytest.raises(ValueError, match="integer class labels"):
        model(x, t, torch.tensor([0.0, 1.0]))


def test_fp16_torso_matches_fp32():
    model = randomize(UNetModel(**SMALL), seed=0).eval()
    half = UNetModel(**SMALL, use_fp16=True).eval()
    half.load_state_dict(model.state_dict())
    assert half.dtype == torch.float16 and half.time_embed[0].weight.dtype == torch.float32
    x, t, y = inputs()
    out = half(x, t, y)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, model(x, t, y), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("pool", ["adaptive", "attention", "spatial", "spatial_v2"])
def test_classifier_output_shape(pool):
    model = EncoderUNetModel(8, 4, 32, 10, 1, (2,), channel_mult=(1, 2), num_head_channels=32, pool=pool)
    assert model(torch.randn(2, 4, 8, 8), torch.tensor([1, 2])).shape == (2, 10)


def test_classifier_pool_errors():
    with pytest.raises(ValueError, match="unknown pool 'max'"):
        EncoderUNetModel(8, 4, 32, 10, 1, (), channel_mult=(1, 2), pool="max")
    with pytest.raises(ValueError, match="pool='attention' needs num_head_channels"):
        EncoderUNetModel(8, 4, 32, 10, 1, (), channel_mult=(1, 2), pool="attention")


def test_bf16_autocast_is_close_to_fp32():
    # The recommended low-precision path: float32 weights, bf16 compute; GroupNorm32 keeps norms in float32.
    model = randomize(UNetModel(**SMALL), seed=0).eval()
    x, t, y = inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, y)
    torch.testing.assert_close(out.float(), model(x, t, y), rtol=5e-2, atol=5e-2)


def test_preferred_memory_format_helper():
    from diffusion.nn import preferred_memory_format, to_preferred_format

    fmt = preferred_memory_format("cpu")
    x = to_preferred_format(torch.randn(2, 4, 8, 8))
    assert x.is_contiguous(memory_format=fmt)
    assert to_preferred_format(torch.randn(2, 4, 8)).shape == (2, 4, 8)  # only 4-D tensors change format
    model = to_preferred_format(UNetModel(**SMALL))
    assert model.input_blocks[0][0].weight.is_contiguous(memory_format=fmt)
