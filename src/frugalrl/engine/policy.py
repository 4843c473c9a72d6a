"""The policy: a Hugging Face causal LM and its tokenizer, with batched response log-probs.

Any causal LM loads through the same path (`load_policy`): a local directory, a Hub name, or the built-in
testbed base. Log-probs are computed by the training model on the exact sampled tokens, with logits divided
by the sampling temperature, one forward per micro-batch, trimmed to the micro-batch's real lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from frugalrl.algos import entropy_from_logits, token_logprobs
from frugalrl.engine.model_checks import check_model_source
from frugalrl.errors import ModelError, describe_exception
from frugalrl.types import RolloutBatch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ADAPTER_CONFIG = "adapter_config.json"  # a directory holding a PEFT adapter rather than whole weights


@dataclass
class Policy:
    """The model (with any LoRA adapters injected into its modules), its tokenizer and, for a LoRA policy,
    PEFT's wrapper around the model (`frugalrl.engine.lora`), which saves and switches the adapters."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: Any = None

    def save(self, path: str | Path) -> None:
        """Weights as safetensors plus tokenizer, in Hugging Face format (`from_pretrained` loads it); a LoRA
        policy saves its own adapter only (not a LoRA critic's), in PEFT's format (`load_policy` merges it into
        its base)."""
        if self.adapter is not None:
            self.adapter.save_pretrained(path, safe_serialization=True, selected_adapters=["default"])
        else:
            self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)


def load_policy(name_or_path: str | Path, *, device: str = "cpu", dtype: str = "float32") -> Policy:
    """Load a causal LM and its tokenizer from a directory or a Hub name.

    A tokenizer without a pad token gets its EOS token as pad (the usual choice for decoder-only models).
    A directory holding a LoRA adapter (a LoRA run's checkpoint) loads as its base with the adapter merged.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    if (Path(name_or_path) / ADAPTER_CONFIG).is_file():
        from frugalrl.engine.lora import merge_adapter_dir

        model, tokenizer = merge_adapter_dir(Path(name_or_path), device=device, dtype=dtype)
        return Policy(model, tokenizer)
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
    packed: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """log π(o_t) [n, T] of the batch's response tokens (0 on padding), and their entropy [n, T] if asked.

    The entropy is detached unless `entropy_grad`: logged but not trained on, its [n, T, V] graph would only
    hold memory until the backward pass.

    Columns beyond the longest response in the batch are returned as 0 so the shape matches
    `batch.response_ids`. Gradients flow when called with grad enabled.
    With `packed`, the forward packs the sequences without padding (`packed_logprobs`) where the model's
    attention supports it (`supports_packing`), else it takes the padded path.
    """
    if packed and supports_packing(model):
        return packed_logprobs(
            model, batch, temperature=temperature, with_entropy=with_entropy, entropy_grad=entropy_grad
        )
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


# Attention implementations that keep packed sequences apart when given only restarting position ids:
# sdpa, eager and flex build a block-diagonal causal mask from them, flash attention runs variable-length.
PACKING_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


def supports_packing(model: PreTrainedModel) -> bool:
    """Whether `model` can run packed sequences: a transformers model whose attention is one of
    `PACKING_ATTENTION` (a LoRA policy is its base model with adapters inside, so the same holds)."""
    config = getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None) in PACKING_ATTENTION


@dataclass(frozen=True)
class Packing:
    """Where each row of a batch sits once its real tokens (prompt then response, no padding) are packed
    into bins, rows of `width` columns, several sequences per bin.

    input_ids, position_ids: [k, width], position ids restarting at 0 with every sequence (the end of a
    bin is a filler sequence of pad tokens, positions 0, 1, ..., whose outputs are never read);
    logit_index [R]: flat index into [k · width] of the logit that predicts each real response token, rows in
    order, tokens in order (R real response tokens in all).
    """

    input_ids: Tensor
    position_ids: Tensor
    logit_index: Tensor


def pack_rows(batch: RolloutBatch, pad_id: int = 0) -> Packing:
    """First-fit-decreasing packing of the batch's sequences into bins as wide as the longest sequence:
    the attention of a bin costs what a padded row costs, and there are fewer bins than rows. The filler
    `pad_id` is never attended to by a real token, so any valid token id does."""
    prompt_lens = batch.prompt_mask.sum(-1).tolist()  # [n]
    response_lens = batch.response_mask.sum(-1).tolist()  # [n]
    lengths = [p + r for p, r in zip(prompt_lens, response_lens, strict=True)]
    width = max(lengths)
    bins: list[int] = []  # space used in each bin
    place: list[tuple[int, int]] = [(0, 0)] * len(lengths)  # row → (bin, first column)
    for row in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((b for b, used in enumerate(bins) if used + lengths[row] <= width), len(bins))
        if slot == len(bins):
            bins.append(0)
        place[row] = (slot, bins[slot])
        bins[slot] += lengths[row]
    input_ids = torch.full((len(bins), width), pad_id, dtype=torch.long)  # [k, W]
    position_ids = torch.zeros(len(bins), width, dtype=torch.long)  # [k, W]
    logit_index = []
    for row, (b, start) in enumerate(place):
        p, r = prompt_lens[row], response_lens[row]
        tokens = torch.cat([batch.prompt_ids[row][batch.prompt_mask[row]], batch.response_ids[row, :r]])
        input_ids[b, start : start + p + r] = tokens
        position_ids[b, start : start + p + r] = torch.arange(p + r)
        # response token t sits at column start + p + t; the logit predicting it at the column before
        logit_index.append(b * width + start + p - 1 + torch.arange(r))
    for b, used in enumerate(bins):  # the free end of a bin: a sequence of its own, attending to itself
        position_ids[b, used:] = torch.arange(width - used)
    return Packing(input_ids, position_ids, torch.cat(logit_index) if logit_index else torch.zeros(0, dtype=torch.long))


def packed_logprobs(
    model: PreTrainedModel,
    batch: RolloutBatch,
    *,
    temperature: float,
    with_entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """`response_logprobs` computed on packed sequences: one forward over the bins of `pack_rows`, no
    attention mask (the restarting position ids keep each sequence to itself), and the log-softmax taken on
    the real response tokens only. Same values as the padded path, up to float rounding."""
    device = model.device
    packing = pack_rows(batch)
    hidden = model(
        input_ids=packing.input_ids.to(device), position_ids=packing.position_ids.to(device), use_cache=False
    ).logits  # [k, W, V]
    logits = hidden.flatten(0, 1)[packing.logit_index.to(device)]  # [R, V]
    mask = batch.response_mask.to(device)  # [n, T]
    targets = batch.response_ids.to(device)[mask]  # [R] real response tokens, rows in order
    logp = torch.zeros(mask.shape, dtype=torch.float32, device=device).masked_scatter(
        mask, token_logprobs(logits, targets, temperature=temperature)
    )
    entropy = None
    if with_entropy:
        values = entropy_from_logits(logits if entropy_grad else logits.detach(), temperature=temperature)  # [R]
        entropy = torch.zeros(mask.shape, dtype=torch.float32, device=device).masked_scatter(mask, values)
    return logp, entropy
