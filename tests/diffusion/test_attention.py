"""SDPA attention against the reference's explicit softmax(QK^T / sqrt(d)) V with its two head splits."""

import math

import pytest
import torch

from diffusion.attention import AttentionBlock, AttentionPool2d, QKVAttention, QKVAttentionLegacy, heads_for


def explicit_legacy(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """guided-diffusion's legacy order: [N, H*(3*d), T] -> heads first, then q, k, v."""
    n, width, length = qkv.shape
    d = width // (3 * heads)
    q, k, v = qkv.reshape(n * heads, 3 * d, length).split(d, dim=1)  # [NH, d, T] each
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(d), dim=-1)  # [NH, T, T]
    return torch.einsum("bts,bcs->bct", weight, v).reshape(n, -1, length)


def explicit_new_order(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """guided-diffusion's new order: [N, 3*(H*d), T] -> q, k, v first, then heads."""
    n, width, length = qkv.shape
    d = width // (3 * heads)
    q, k, v = (t.reshape(n * heads, d, length) for t in qkv.chunk(3, dim=1))
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(d), dim=-1)
    return torch.einsum("bts,bcs->bct", weight, v).reshape(n, -1, length)


@pytest.mark.parametrize("heads", [1, 3])
def test_sdpa_matches_explicit_formula_both_orders(heads):
    torch.manual_seed(0)
    qkv = torch.randn(2, 3 * heads * 4, 7, dtype=torch.float64)
    torch.testing.assert_close(QKVAttentionLegacy(heads)(qkv), explicit_legacy(qkv, heads), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(QKVAttention(heads)(qkv), explicit_new_order(qkv, heads), rtol=1e-12, atol=1e-12)


def test_the_two_orders_split_differently():
    # With several heads the same qkv tensor means different q/k/v, so a checkpoint needs the right order.
    torch.manual_seed(0)
    qkv = torch.randn(1, 3 * 2 * 4, 5, dtype=torch.float64)
    assert not torch.allclose(QKVAttentionLegacy(2)(qkv), QKVAttention(2)(qkv))


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_block_is_residual_explicit_attention(new_order):
    torch.manual_seed(0)
    # float32: GroupNorm32 normalises in float32 by design, as the reference does.
    block = AttentionBlock(32, num_head_channels=8, use_new_attention_order=new_order)
    torch.nn.init.normal_(block.proj_out.weight)  # the reference zero-initialises it; make the branch visible
    x = torch.randn(2, 32, 3, 4)
    flat = x.reshape(2, 32, 12)
    formula = explicit_new_order if new_order else explicit_legacy
    expected = flat + block.proj_out(formula(block.qkv(block.norm(flat)), 4))
    torch.testing.assert_close(block(x), expected.reshape(2, 32, 3, 4), rtol=1e-5, atol=1e-5)
    assert block.num_heads == 4


def test_head_count_rules_and_errors():
    assert heads_for(64, 4, -1) == 4
    assert heads_for(192, 4, 64) == 3  # num_head_channels wins over num_heads
    with pytest.raises(ValueError, match="not divisible by num_head_channels 48"):
        heads_for(64, 1, 48)
    with pytest.raises(ValueError, match="not divisible by num_heads 3"):
        AttentionBlock(64, num_heads=3)
    with pytest.raises(ValueError, match="qkv width 30 is not divisible by 3 \\* n_heads = 9"):
        QKVAttention(3)(torch.zeros(1, 30, 2))


def test_attention_pool_shape():
    pool = AttentionPool2d(spacial_dim=4, embed_dim=64, num_heads_channels=32, output_dim=10)
    assert pool(torch.randn(3, 64, 4, 4)).shape == (3, 10)
    assert pool.positional_embedding.shape == (64, 17)
