"""The transformer pieces' dropout: the rate and scale of its masks, its seeding, inference as the identity, and
attention with dropout giving scaled_dot_product_attention's values when nothing is dropped."""
from __future__ import annotations

import pytest
import torch

from policies.blocks import Attention, Dropout, dropout, keep_mask
from twin_kit import torch_threads


@pytest.fixture(autouse=True)
def _one_thread():
    with torch_threads(1):
        yield


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_drops_p_of_the_entries_independently(p):
    torch.manual_seed(0)
    m = keep_mask((400, 1001), p, torch.device("cpu"))
    n = m.numel()
    dropped = 1 - m.float().mean().item()
    assert abs(dropped - p) < 4 * (p * (1 - p) / n) ** 0.5
    flat = m.flatten().float()
    for lag in (1, 2, 3, 4):  # neighbours come from the same 64-bit draw (lags 1, 2) or the next one (3, 4)
        both = (flat[:-lag] * flat[lag:]).mean().item()
        assert abs(both - (1 - p) ** 2) < 0.01


def test_dropout_is_seeded_scaled_and_off_in_inference():
    x = torch.ones(50_000)
    torch.manual_seed(3)
    a = dropout(x, 0.2, True)
    torch.manual_seed(3)
    b = dropout(x, 0.2, True)
    assert torch.equal(a, b)
    assert a.unique().tolist() == pytest.approx([0.0, 1.25])
    assert abs(a.mean().item() - 1.0) < 0.02
    assert dropout(x, 0.2, False) is x and dropout(x, 0.0, True) is x
    assert torch.equal(dropout(x, 1.0, True), torch.zeros_like(x))
    layer = Dropout(0.2).eval()
    assert layer(x) is x
    assert dropout(x.bfloat16(), 0.2, True).dtype == torch.bfloat16


def test_attention_with_dropout_matches_sdpa_when_nothing_drops():
    """The training path (explicit softmax, then dropout) and scaled_dot_product_attention agree, masks included."""
    torch.manual_seed(0)
    a = Attention(32, 4, dropout=1e-9)
    q, kv = torch.randn(3, 5, 32), torch.randn(3, 7, 32)
    mask = torch.rand(3, 1, 5, 7) > 0.4
    mask[..., 0] = True
    a.train()
    trained = a(q, kv, kv, mask)
    a.eval()
    assert torch.allclose(trained, a(q, kv, kv, mask), atol=1e-5)
    a.dropout = 0.5
    a.train()
    torch.manual_seed(1)
    dropped = a(q, kv, kv, mask)
    assert not torch.allclose(dropped, trained, atol=1e-3)
