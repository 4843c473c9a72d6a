"""The policy: a Hugging Face causal LM and its tokenizer, with batched response log-probs.

Any causal LM loads through the same path (`load_policy`): a local directory, a Hub name, or the built-in
testbed base. Log-probs are computed by the training model on the exact sampled tokens, with logits divided
by the sampling temperature, one forward per micro-batch, trimmed to the micro-batch's real lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from frugalrl.algos import entropy_from_logits, token_logprobs
from frugalrl.engine.model_checks import check_model_source
from frugalrl.errors import ModelError, describe_exception
from frugalrl.types import RolloutBatch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Policy:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase

    def save(self, path: str | Path) -> None:
        """Weights as safetensors plus tokenizer, in Hugging Face format (`from_pretrained` loads it)."""
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)


def load_policy(name_or_path: str | Path, *, device: str = "cpu", dtype: str = "float32") -> Policy:
    """Load a causal LM and its tokenizer from a directory or a Hub name.

    A tokenizer without a pad token gets its EOS token as pad (the usual choice for decoder-only models).
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    source = str(name_or_path)
    check_model_source(source)  # a local path's problems named before transformers reads it as a Hub id
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except Exception as err:
        raise ModelError(f"cannot load the tokenizer of model {source}: {describe_exception(err)}") from err
    if tokenizer.eos_token_id is None:
        raise ModelError(
            f"the tokenizer of model {source} has no EOS token, so responses could never end; "
            "set eos_token in its tokenizer_config.json"
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=DTYPES[dtype])
    except Exception as err:
        where = "" if Path(source).expanduser().exists() else " (not a local directory, so read as a Hub id)"
        raise ModelError(f"cannot load model {source}{where}: {describe_exception(err)}") from err
    return Policy(model.to(device), tokenizer)


def sequence_inputs(batch: RolloutBatch) -> tuple[Tensor, Tensor, Tensor, int]:
    """Prompt ⊕ response as model inputs, trimmed of all-padding columns on both sides.

    Returns input_ids [n, L], attention_mask [n, L], position_ids [n, L] and P, the trimmed prompt width:
    response token t sits at column P + t, and its logit at column P + t − 1.
    """
    first_prompt_col = int(batch.prompt_mask.any(0).long().argmax())  # left padding common to all rows
    width = int(batch.response_mask.sum(-1).max()) if batch.num_rows else 0  # longest response
    prompt_ids = batch.prompt_ids[:, first_prompt_col:]
    prompt_mask = batch.prompt_mask[:, first_prompt_col:]
    input_ids = torch.cat([prompt_ids, batch.response_ids[:, :width]], dim=1)  # [n, L]
    attention_mask = torch.cat([prompt_mask, batch.response_mask[:, :width]], dim=1).long()  # [n, L]
    # Left padding shifts positions: count real tokens so every row starts at position 0, as in generate.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [n, L]
    return input_ids, attention_mask, position_ids, prompt_ids.shape[1]


def response_logprobs(
    model: PreTrainedModel,
    batch: RolloutBatch,
    *,
    temperature: float,
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """log π(o_t) [n, T] of the batch's response tokens (0 on padding), and their entropy [n, T] if asked.

    The entropy is detached unless `entropy_grad`: logged but not trained on, its [n, T, V] graph would only
    hold memory until the backward pass.

    Columns beyond the longest response in the batch are returned as 0 so the shape matches
    `batch.response_ids`. Gradients flow when called with grad enabled.
    """
    device = model.device
    input_ids, attention_mask, position_ids, prompt_width = sequence_inputs(batch)
    width = input_ids.shape[1] - prompt_width
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        position_ids=position_ids.to(device),
        use_cache=False,
    ).logits[:, prompt_width - 1 : -1]  # [n, width, V]: the logit at column c predicts token c + 1
    mask = batch.response_mask[:, :width].to(device)
    logp = token_logprobs(logits, batch.response_ids[:, :width].to(device), temperature=temperature) * mask
    entropy = None
    if with_entropy:
        entropy = entropy_from_logits(logits if entropy_grad else logits.detach(), temperature=temperature) * mask
    full = batch.response_ids.shape[1]
    return _pad_right(logp, full), None if entropy is None else _pad_right(entropy, full)


def _pad_right(x: Tensor, width: int) -> Tensor:
    return torch.nn.functional.pad(x, (0, width - x.shape[1]))
