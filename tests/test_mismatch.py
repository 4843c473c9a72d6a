"""Engine/trainer log-prob mismatch: its metrics, the truncated importance correction, and how batches that
carry engine log-probs select and concatenate (no vLLM needed)."""

import math
import sys

import pytest
import torch

from frugalrl.algos.mismatch import engine_mismatch_metrics, truncated_is_advantages, truncated_is_weights
from frugalrl.config import ConfigError, load_config
from frugalrl.types import RolloutBatch, concat_batches

LOGP = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])  # the trainer's; row 1 has one valid token
ENGINE = torch.tensor([[-1.5, -1.0, 0.0], [-0.5, 0.0, 0.0]])
MASK = torch.tensor([[True, True, False], [True, False, False]])


def test_mismatch_metrics_over_valid_tokens():
    m = engine_mismatch_metrics(LOGP, ENGINE, MASK)
    # valid gaps engine − trainer: −0.5, +1.0, 0.0
    assert m["rollout/logp_mismatch_mean"] == pytest.approx(0.5)  # (0.5 + 1 + 0) / 3
    assert m["rollout/logp_mismatch_max"] == pytest.approx(1.0)
    assert m["rollout/logp_mismatch_k1"] == pytest.approx(0.5 / 3)  # (−0.5 + 1 + 0) / 3
    assert m["rollout/engine_logp"] == pytest.approx(-3.0 / 3)  # (−1.5 − 1 − 0.5) / 3


def test_truncated_importance_weights_cap_the_ratio_and_leave_padding_at_one():
    w = truncated_is_weights(LOGP, ENGINE, MASK, cap=2.0)
    # π/π_engine = e^(−1 + 1.5) = e^0.5 ≈ 1.65 (under the cap); e^(−2 + 1) = e^−1; e^0 = 1
    expected = torch.tensor([[math.exp(0.5), math.exp(-1.0), 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(w, expected)
    capped = truncated_is_weights(LOGP, ENGINE, MASK, cap=1.2)
    assert capped[0, 0].item() == pytest.approx(1.2)
    adv = truncated_is_advantages(torch.tensor([2.0, -1.0]), LOGP, ENGINE, MASK, cap=1.2)
    torch.testing.assert_close(adv, torch.tensor([[2.4, 2 * math.exp(-1.0), 2.0], [-1.0, -1.0, -1.0]]))


def _batch(rows, width, engine):
    return RolloutBatch(
        problems=[],
        group_index=torch.zeros(rows, dtype=torch.long),
        prompt_ids=torch.ones(rows, 2, dtype=torch.long),
        prompt_mask=torch.ones(rows, 2, dtype=torch.bool),
        response_ids=torch.ones(rows, width, dtype=torch.long),
        response_mask=torch.ones(rows, width, dtype=torch.bool),
        behaviour_logp=torch.full((rows, width), -1.0),
        truncated=torch.zeros(rows, dtype=torch.bool),
        completions=[""] * rows,
        engine_logp=torch.full((rows, width), -2.0) if engine else None,
    )


def test_engine_logprobs_follow_select_and_concat():
    with_engine, without = _batch(2, 3, engine=True), _batch(1, 2, engine=False)
    assert with_engine.select([1]).engine_logp.tolist() == [[-2.0, -2.0, -2.0]]
    both = concat_batches([with_engine, without])
    # the rows sampled by the training model count as no mismatch: their own behaviour log-probs, then padding
    assert both.engine_logp.tolist() == [[-2.0, -2.0, -2.0], [-2.0, -2.0, -2.0], [-1.0, -1.0, 0.0]]
    assert concat_batches([without, without]).engine_logp is None


def test_vllm_backend_without_vllm_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(ConfigError, match=r"rollout.backend=vllm needs the vllm package.*make vllm"):
        load_config(None, ["rollout.backend=vllm"])
    with pytest.raises(ConfigError, match="rollout.tis_cap must be 0"):
        load_config(None, ["rollout.tis_cap=0.5"])
