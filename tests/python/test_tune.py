# SPDX-License-Identifier: Apache-2.0
"""clattn.tune runs the shipped clattn program and returns its table; the tuned entry is then what a new context
looks up. The database goes to a temporary directory (CLATTN_TUNING_DIR), never the user's."""
import pytest

import clattn


def test_tune_and_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv("CLATTN_TUNING_DIR", str(tmp_path))
    rows = clattn.tune("decode:d16:L256", budget=2, timeout=300)
    assert len(rows) == 1
    row = rows[0]
    assert row["class"] == "decode:d16:L256:f32" and row["evaluations"] == 2 and row["failed"] == 0
    assert row["best_ms"] > 0 and row["params"].startswith("variant=")
    assert list(tmp_path.glob("*.json")), "no database written"
    with clattn.Context() as ctx:
        got = clattn.tuning_lookup(ctx, head_dim=16, q_len=1, kv_len=256)
        assert got["source"] == "exact" and got["params"] == row["params"]
        assert got["query_class"] == "decode:d16:L256:f32"


def test_tune_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CLATTN_TUNING_DIR", str(tmp_path))
    with pytest.raises(clattn.InvalidArgumentError) as info:
        clattn.tune("prefill:d64:Lbanana")
    assert "--shapes" in info.value.detail
    with clattn.Context() as ctx:
        with pytest.raises(clattn.InvalidArgumentError) as info:
            clattn.tuning_lookup(ctx, operation="no_such_kernel")
        assert info.value.status == -3000 and "no_such_kernel" in info.value.detail
