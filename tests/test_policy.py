"""The policy wrapper: sequence inputs, log-probs, loading a saved model."""


import pytest
import torch

from frugalrl.engine.policy import load_policy, response_logprobs, sequence_inputs

covers = pytest.mark.covers


def test_sequence_inputs_positions_start_at_zero_despite_left_padding(micro_batch):
    input_ids, attention_mask, position_ids, prompt_width = sequence_inputs(micro_batch)
    first_real = attention_mask.argmax(-1)
    assert (position_ids[torch.arange(len(first_real)), first_real] == 0).all()
    assert attention_mask[:, 0].any()  # columns of padding common to all rows were trimmed
    assert input_ids.shape[1] == prompt_width + int(micro_batch.response_mask.sum(-1).max())


def test_logprobs_are_independent_of_batch_composition(micro_policy, micro_batch):
    full, _ = response_logprobs(micro_policy.model, micro_batch, temperature=1.0)
    alone, _ = response_logprobs(micro_policy.model, micro_batch.select([4]), temperature=1.0)
    torch.testing.assert_close(alone[0], full[4], atol=1e-5, rtol=1e-5)


def test_load_policy_reads_a_saved_model_directory(tmp_path, micro_policy, micro_batch):
    micro_policy.save(tmp_path / "m")
    loaded = load_policy(tmp_path / "m")
    assert loaded.tokenizer.get_vocab() == micro_policy.tokenizer.get_vocab()
    a, _ = response_logprobs(micro_policy.model, micro_batch, temperature=1.0)
    b, _ = response_logprobs(loaded.model, micro_batch, temperature=1.0)
    torch.testing.assert_close(a, b)
