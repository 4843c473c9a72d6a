"""Rollout backends: sample G responses per problem and return them as a typed `RolloutBatch`.

Both backends sample from the training model itself (left padding, KV cache, stop at EOS), in chunks that
fit a token budget, and record the behaviour log-probs μ(o_t) from the same forward passes that produced
the samples, so replay methods get them without an extra pass.

- `hf`: Hugging Face `generate`.
- `compact`: frugalrl's own decoding loop, which drops finished rows (and their KV cache) from the batch.
  `generate` keeps computing every row until the longest response ends, so a batch whose responses average
  25 tokens but reach 80 spends most of its forwards on rows that are already done.
- `vllm`: an in-process vLLM engine (`frugalrl.engine.vllm_backend`), which holds its own copy of the
  weights: the trainer calls `before_update` / `after_update` around each optimiser update so the engine
  frees its memory and then receives the new weights (both are no-ops for `hf` and `compact`).

A backend is built by `Backend.build(policy, format_prompt=..., token_budget=..., seed=..., options=...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.cache_utils import Cache

from frugalrl.algos import token_logprobs
from frugalrl.registry import Registry
from frugalrl.types import Problem, RolloutBatch, SamplingParams


class HFGenerateBackend:
    """Sampling with `model.generate` on the policy's own weights (no copy, so no weight sync)."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        format_prompt: Callable[[str], str],
        token_budget: int = 16384,
    ) -> None:
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs a pad and an EOS token for batched generation")
        self.model = model
        # A checkpoint's own generation defaults (top_k, repetition penalty, ...) would make the sampling
        # distribution differ from π/T, and with it every importance ratio: sample from exactly what the
        # config says. The saved model then carries this clean generation config.
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        self.tokenizer = tokenizer
        self.format_prompt = format_prompt
        self.token_budget = token_budget

    @classmethod
    def build(
        cls,
        policy: Any,
        *,
        format_prompt: Callable[[str], str],
        token_budget: int = 16384,
        seed: int = 0,
        options: dict[str, Any] | None = None,
    ) -> HFGenerateBackend:
        """The backend of a run, sampling from `policy` (a `Policy`). `seed` and `options` (rollout.vllm) are
        for backends with an engine of their own; this one samples from torch's generator and has none."""
        return cls(policy.model, policy.tokenizer, format_prompt=format_prompt, token_budget=token_budget)

    def before_update(self) -> None:
        """Called before each policy update: nothing to free, the backend has no memory of its own."""

    def after_update(self) -> None:
        """Called after each policy update (and after a resume loads weights): nothing to sync, the
        backend samples from the policy's own weights."""

    @torch.no_grad()
    def generate(self, problems: list[Problem], params: SamplingParams) -> RolloutBatch:
        """`params.n` responses for each problem; rows of group i are i·n .. i·n + n − 1."""
        prompts = self._encode_prompts(problems)  # [B, P], [B, P]
        group_index = torch.arange(len(problems)).repeat_interleave(params.n)  # [N]
        prompt_ids = prompts[0][group_index]  # [N, P]
        prompt_mask = prompts[1][group_index]  # [N, P]
        rows_per_chunk = max(1, self.token_budget // (prompt_ids.shape[1] + params.max_new_tokens))
        chunks = [
            self._generate_chunk(prompt_ids[i : i + rows_per_chunk], prompt_mask[i : i + rows_per_chunk], params)
            for i in range(0, len(group_index), rows_per_chunk)
        ]
        response_ids = _pad_cat([c[0] for c in chunks], self.tokenizer.pad_token_id)  # [N, T]
        behaviour_logp = _pad_cat([c[1] for c in chunks], 0.0)  # [N, T]
        response_mask, truncated = response_mask_and_truncation(response_ids, self.tokenizer.eos_token_id)
        behaviour_logp = behaviour_logp.masked_fill(~response_mask, 0.0)  # padding may sit at −inf under top-p
        completions = self.tokenizer.batch_decode(
            response_ids.masked_fill(~response_mask, self.tokenizer.pad_token_id), skip_special_tokens=True
        )
        return RolloutBatch(
            problems=list(problems),
            group_index=group_index,
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            response_ids=response_ids,
            response_mask=response_mask,
            behaviour_logp=behaviour_logp,
            truncated=truncated,
            completions=completions,
        )

    def _encode_prompts(self, problems: list[Problem]) -> tuple[Tensor, Tensor]:
        texts = [self.format_prompt(p.question) for p in problems]
        self.tokenizer.padding_side = "left"  # generation appends on the right: prompts must end flush
        # A rendered chat template holds its special tokens already (frugalrl.data.templates).
        special = getattr(self.format_prompt, "add_special_tokens", True)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=special)
        return enc["input_ids"], enc["attention_mask"].bool()

    def _generate_chunk(self, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams) -> tuple[Tensor, Tensor]:
        device = self.model.device
        greedy = params.temperature == 0
        out = self.model.generate(
            input_ids=prompt_ids.to(device),
            attention_mask=prompt_mask.long().to(device),
            do_sample=not greedy,
            # transformers samples with top_k = 50 unless a call says otherwise; None switches it off.
            top_k=None,
            **({} if greedy else {"temperature": params.temperature, "top_p": params.top_p}),
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            return_dict_in_generate=True,
            output_scores=True,
        )
        new_tokens = out.sequences[:, prompt_ids.shape[1] :]  # [n, T]
        # The processed scores are the logits after temperature and top-p, i.e. the distribution μ the
        # tokens were drawn from (top-p's excluded tokens at −inf); greedy gets the raw logits.
        scores = torch.stack(out.scores, dim=1)  # [n, T, V]
        logp = token_logprobs(scores, new_tokens)  # [n, T]
        return new_tokens.cpu(), logp.cpu()


class CompactSamplingBackend(HFGenerateBackend):
    """Sampling by frugalrl's own loop: one forward per new token for the rows still generating only.

    The distribution is the one `generate` samples from: logits / T, then nucleus filtering (the smallest
    set of tokens whose probability reaches top_p, at least one), multinomial draw; greedy takes the
    argmax. A row leaves the batch, KV cache included, at its EOS.
    """

    def _generate_chunk(self, prompt_ids: Tensor, prompt_mask: Tensor, params: SamplingParams) -> tuple[Tensor, Tensor]:
        device, eos = self.model.device, self.tokenizer.eos_token_id
        n, steps = prompt_ids.shape[0], params.max_new_tokens
        tokens = torch.full((n, steps), self.tokenizer.pad_token_id, dtype=torch.long)  # [n, T]
        logp = torch.zeros(n, steps)  # [n, T]
        rows = torch.arange(n)  # [a] chunk rows still generating
        mask = prompt_mask.long().to(device)  # [a, P + t]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [a, P] left padding: real tokens start at 0
        out = self.model(input_ids=prompt_ids.to(device), attention_mask=mask, position_ids=positions, use_cache=True)
        cache: Cache = out.past_key_values
        next_position = positions[:, -1] + 1  # [a]
        width = 0
        for t in range(steps):
            token, token_logp = _draw(out.logits[:, -1].float(), params)  # [a], [a]
            tokens[rows, t], logp[rows, t] = token.cpu(), token_logp.cpu()
            width = t + 1
            going = token != eos  # [a]
            if t == steps - 1 or not bool(going.any()):
                break
            if not bool(going.all()):
                keep = going.nonzero().squeeze(-1)  # [a']
                cache.batch_select_indices(keep)
                rows, token, mask, next_position = rows[keep.cpu()], token[keep], mask[keep], next_position[keep]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)  # [a, P + t + 1]
            out = self.model(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=next_position[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            next_position = next_position + 1
        return tokens[:, :width], logp[:, :width]


rollout_backends: Registry[type[HFGenerateBackend]] = Registry("rollout backend")
rollout_backends.register("hf")(HFGenerateBackend)
rollout_backends.register("compact")(CompactSamplingBackend)


def _draw(logits: Tensor, params: SamplingParams) -> tuple[Tensor, Tensor]:
    """One token per row from `logits` [a, V] under `params`, and its log-probability under the
    distribution it was drawn from (the raw softmax for greedy decoding)."""
    if params.temperature == 0:
        logp = logits.log_softmax(-1)  # [a, V]
        token = logp.argmax(-1)  # [a]
    else:
        scores = logits / params.temperature  # [a, V]
        if params.top_p < 1:
            scores = _nucleus(scores, params.top_p)
        logp = scores.log_softmax(-1)  # [a, V]
        token = torch.multinomial(logp.exp(), 1).squeeze(-1)  # [a]
    return token, logp.gather(-1, token[:, None]).squeeze(-1)


def _nucleus(scores: Tensor, top_p: float) -> Tensor:
    """`scores` [a, V] with every token outside the nucleus at −inf: tokens are dropped from the least
    likely up while the probability mass of the dropped ones stays ≤ 1 − top_p; the most likely is kept."""
    sorted_scores, order = scores.sort(-1)  # ascending
    dropped_mass = sorted_scores.softmax(-1).cumsum(-1)  # [a, V] mass of this token and all less likely
    drop = dropped_mass <= 1 - top_p
    drop[:, -1] = False
    return scores.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))  # back to vocab order


def response_mask_and_truncation(response_ids: Tensor, eos_token_id: int) -> tuple[Tensor, Tensor]:
    """Valid-token mask [N, T] (up to and including the first EOS) and truncation flags [N] (no EOS)."""
    is_eos = response_ids == eos_token_id  # [N, T]
    eos_seen_before = (is_eos.long().cumsum(-1) - is_eos.long()) > 0  # [N, T] an EOS strictly earlier
    return ~eos_seen_before, ~is_eos.any(-1)


def _pad_cat(tensors: list[Tensor], value: float) -> Tensor:
    """Concatenate [n_i, T_i] tensors along rows, right-padding to the longest T."""
    width = max(t.shape[1] for t in tensors)
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value) for t in tensors])


# Registered last: the vLLM backend builds on HFGenerateBackend; vllm itself is imported only when it is built.
from frugalrl.engine.vllm_backend import VLLMBackend  # noqa: E402

rollout_backends.register("vllm")(VLLMBackend)
