"""The preference loop: iterative online DPO (ALGORITHMS.md §10), offline preference pairs, and LoRR (§11).

One step is one iteration of iterative DPO: select prompts → sample K = `rollout.group_size` responses each →
score (all three are the RL loop's own `_collect`, so selectors and filters work unchanged) → pair each
group's best response with its worst (groups that all score the same are skipped) → log-probs of π_ref on
the pairs → `preference.epochs` passes of the preference loss over them. With `preference.offline_path` the
pairs come from a file instead, B per step. With `lorr.enabled` each batch gets L = `lorr.replay_number`
passes of the hybrid loss (1 − λ_l)·ℓ_pref + λ_l·ℓ_SFT, and every R = `lorr.reset_every` steps the selected
weights shrink toward their initial values and the run's first batches are trained on again.

Everything around the step (evaluation, checkpoints and resume, metrics, statistics, progress, report) is
the RL trainer's: `PreferenceTrainer` overrides `step` and adds its own state to checkpoints.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from frugalrl.algos import Advantages
from frugalrl.algos.pairs import best_worst_pairs
from frugalrl.algos.preference import preference_losses
from frugalrl.config import Config
from frugalrl.data.preference_pairs import PreferenceRow, load_preference_pairs
from frugalrl.engine.passes import micro_chunks
from frugalrl.engine.policy import response_logprobs
from frugalrl.engine.step_metrics import batch_metrics
from frugalrl.replay.lorr import matching_parameters, sft_weight, shrink_toward_initial
from frugalrl.training.trainer import Trainer, _timed
from frugalrl.types import Problem, RolloutBatch, concat_batches


@dataclass
class PairBatch:
    """P preference pairs: row i of `chosen` is preferred to row i of `rejected` (same prompt)."""

    chosen: RolloutBatch
    rejected: RolloutBatch

    @property
    def num_pairs(self) -> int:
        return self.chosen.num_rows

    @property
    def tokens(self) -> int:
        return int(self.chosen.response_mask.sum() + self.rejected.response_mask.sum())


class PreferenceTrainer(Trainer):
    """`algo.kind: preference`: the RL trainer with a preference step (sections `preference:`, `lorr:`)."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        cfg = config
        self.pref, self.lorr = cfg.preference, cfg.lorr
        if self.pref.reference == "initial" and self.ref_model is None:
            self.ref_model = copy.deepcopy(self.policy.model).eval().requires_grad_(False)
        self.offline: list[PreferenceRow] | None = None
        if self.pref.offline_path:
            self.offline = load_preference_pairs(
                self.pref.offline_path,
                prompt_column=self.pref.prompt_column,
                chosen_column=self.pref.chosen_column,
                rejected_column=self.pref.rejected_column,
                split=self.pref.offline_split,
                subset=self.pref.offline_subset,
            )
        self.reset_params: dict[str, torch.nn.Parameter] = {}
        self.initial_weights: dict[str, Tensor] = {}  # W_0 of the reset tensors
        if self.lorr.enabled and self.lorr.reset_every:
            self.reset_params = matching_parameters(self.policy.model, self.lorr.reset_pattern)
            if not self.reset_params:
                names = [n for n, _ in self.policy.model.named_parameters()][:4]
                raise ValueError(
                    f"lorr.reset_pattern {self.lorr.reset_pattern!r} matches no parameter of {cfg.model.path} "
                    f"(names look like {', '.join(names)}, ...)"
                )
            self.initial_weights = {n: p.detach().clone().cpu() for n, p in self.reset_params.items()}
        self.initial_batches: list[PairBatch] = []  # the run's first batches, retrained on after each reset
        self.resets = 0

    # ---------------------------------------------------------------------------------------------------
    def step(self, step: int) -> tuple[RolloutBatch, dict[str, float]]:
        """One iteration; returns the scored batch (every generated response, or the offline pairs) and metrics."""
        cfg, timings = self.config, {}
        self.counters.step, self._timings = step, timings
        if self.offline is None:
            batch, passed, rounds = self._collect(step, timings, cfg.trainer.prompts_per_step)
            pairs, metrics = self._online_pairs(step, batch, passed)
            metrics["data/sampling_rounds"] = rounds
            metrics |= self.reward_monitor.step_metrics(step)  # rollout/verify_timeouts, rollout/no_answer_frac
        else:
            batch, pairs = self._offline_pairs(step)
            metrics = {"pref/pairs": float(pairs.num_pairs), "pref/skipped_groups": 0.0}
        with _timed(timings, "time/update"):
            metrics |= self._train(pairs, self._passes(step), step)
            if self.lorr.enabled and len(self.initial_batches) < self.lorr.reuse_initial and pairs.num_pairs:
                self.initial_batches.append(pairs)
            if self.reset_params and step % self.lorr.reset_every == 0:
                metrics |= self._reset_and_reuse(step)
        metrics["trainer/lr"] = self.scheduler.get_last_lr()[0]  # the rate this step trained with
        self.scheduler.step()
        metrics["pref/resets"] = float(self.resets)
        self.counters.effective_steps += int(pairs.num_pairs > 0)
        metrics.update(self.selector.metrics())
        return batch, {**metrics, **timings}

    def _passes(self, step: int) -> int:
        if step == 1 and self.pref.first_batch_passes:
            return self.pref.first_batch_passes
        return self.lorr.replay_number if self.lorr.enabled else self.pref.epochs

    def _online_pairs(self, step: int, batch: RolloutBatch, passed: Tensor) -> tuple[PairBatch, dict[str, float]]:
        """Best-vs-worst pairs of the groups that passed the filters, and the step's rollout/ and data/ metrics."""
        generator = torch.Generator().manual_seed(_step_seed(self.config.run.seed, step, 0))
        rows = passed.nonzero().squeeze(-1)  # [n]
        pairs = best_worst_pairs(
            batch.rewards[rows], batch.group_index[rows], tie_break=self.pref.tie_break, generator=generator
        )
        chosen, rejected = rows[pairs.chosen], rows[pairs.rejected]  # [P] rows of `batch`
        sign = torch.zeros(batch.num_rows)  # [N] the advantage-like view: +1 chosen, −1 rejected, 0 unused
        sign[chosen], sign[rejected] = 1.0, -1.0
        metrics = batch_metrics(batch, Advantages(sign, sign != 0), trained_rows=2 * pairs.num_pairs)
        metrics = {k: v for k, v in metrics.items() if not k.startswith("adv/")}
        metrics["data/filtered_responses"] = int((~passed).sum())
        metrics["pref/pairs"] = float(pairs.num_pairs)
        metrics["pref/skipped_groups"] = float(pairs.skipped)
        return PairBatch(batch.select(chosen), batch.select(rejected)), metrics

    def _offline_pairs(self, step: int) -> tuple[RolloutBatch, PairBatch]:
        """The step's B rows of the preference file, in a seeded order reshuffled every pass over the file."""
        rows, b = self.offline, self.config.trainer.prompts_per_step
        picked, orders = [], {}
        for position in range((step - 1) * b, step * b):
            epoch, index = divmod(position, len(rows))
            if epoch not in orders:
                seeded = torch.Generator().manual_seed(_step_seed(self.config.run.seed, 0, epoch))
                orders[epoch] = torch.randperm(len(rows), generator=seeded)
            picked.append(rows[int(orders[epoch][index])])
        pairs = _encode_pairs(picked, self.backend, self.policy.tokenizer)
        pad_id = self.policy.tokenizer.pad_token_id
        return concat_batches([pairs.chosen, pairs.rejected], pad_id=pad_id, shared_problems=True), pairs

    # ---------------------------------------------------------------------------------------------------
    def _train(self, pairs: PairBatch, passes: int, step: int, prefix: str = "pref/") -> dict[str, float]:
        """`passes` passes of the preference loss (LoRR: the hybrid loss, λ by pass) over the pairs."""
        if pairs.num_pairs == 0:
            return {}
        ref_chosen, ref_rejected = self._reference_logps(pairs)  # [P] each
        logs: dict[str, list[Tensor]] = defaultdict(list)
        mini_batches = min(self.pref.mini_batches, pairs.num_pairs)
        for index in range(1, passes + 1):
            lam = 0.0
            if self.lorr.enabled:
                lam = sft_weight(index, passes, cap=self.lorr.sft_cap, schedule=self.lorr.sft_schedule)
            generator = torch.Generator().manual_seed(_step_seed(self.config.run.seed, step, index))
            order = torch.randperm(pairs.num_pairs, generator=generator)
            for mini in order.chunk(mini_batches):
                for key, value in self._optimiser_step(pairs, mini, ref_chosen, ref_rejected, lam).items():
                    logs[key].append(value)
            logs["lambda"].append(torch.tensor(lam))
        self.counters.train_tokens += pairs.tokens * passes
        return {f"{prefix}{k}": float(torch.stack(v).mean()) for k, v in logs.items()}

    @torch.no_grad()
    def _reference_logps(self, pairs: PairBatch) -> tuple[Tensor, Tensor]:
        """log π_ref(y|x) [P] of chosen and rejected: π_ref is the policy as it is now, at the start of the
        iteration (`preference.reference: iteration`), or the initial policy (`initial`)."""
        model = self.policy.model if self.pref.reference == "iteration" else self.ref_model
        micro, temperature = self.config.trainer.micro_batch_size, self.config.rollout.temperature

        def sums(batch: RolloutBatch) -> Tensor:
            chunks = micro_chunks(torch.arange(batch.num_rows), micro)
            parts = [response_logprobs(model, batch.select(r), temperature=temperature)[0] for r in chunks]
            return torch.cat(parts).sum(-1).cpu()  # [P]

        return sums(pairs.chosen), sums(pairs.rejected)

    def _optimiser_step(
        self, pairs: PairBatch, rows: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, lam: float
    ) -> dict[str, Tensor]:
        """One optimiser step on the pairs `rows`, accumulated over micro-batches of pairs (the losses are
        means over pairs, so each micro-batch's loss is weighted by its share of the mini-batch)."""
        model, device = self.policy.model, self.policy.model.device
        temperature, micro = self.config.rollout.temperature, self.config.trainer.micro_batch_size
        loss_fn = preference_losses.get("hybrid")
        sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros(()))
        self.optimizer.zero_grad(set_to_none=True)
        for local in micro_chunks(rows, max(1, micro // 2) if micro else 0):  # a pair is two sequences
            chosen, rejected = pairs.chosen.select(local), pairs.rejected.select(local)
            logp_c = response_logprobs(model, chosen, temperature=temperature)[0].sum(-1)  # [n]
            logp_r = response_logprobs(model, rejected, temperature=temperature)[0].sum(-1)  # [n]
            loss, metrics = loss_fn(
                logp_c,
                logp_r,
                ref_chosen[local].to(device),
                ref_rejected[local].to(device),
                chosen_len=chosen.response_mask.sum(-1).to(device),
                rejected_len=rejected.response_mask.sum(-1).to(device),
                base=self.pref.loss,
                sft_weight=lam,
                scale_preference=self.lorr.scale_preference,
                **self.pref.loss_args,
            )
            share = len(local) / len(rows)
            (loss * share).backward()
            sums["loss"] += loss.detach().cpu() * share
            for key, value in metrics.items():
                sums[key] += value.detach().cpu() * share
        max_norm = self.config.trainer.grad_clip if self.config.trainer.grad_clip > 0 else float("inf")
        sums["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).detach().cpu()
        self.optimizer.step()
        return {_METRIC_NAMES.get(k, k): v for k, v in sums.items()}

    def _reset_and_reuse(self, step: int) -> dict[str, float]:
        """LoRR's reset: W ← α·W + (1 − α)·W_0 on the selected tensors (their optimiser moments zeroed), then
        L passes over the run's first batches, with π_ref the policy just after the reset."""
        change = shrink_toward_initial(self.reset_params, self.initial_weights, self.optimizer, alpha=self.lorr.alpha)
        self.resets += 1
        metrics = {"pref/reset": 1.0, "pref/reset_change": float(change)}
        for batch in self.initial_batches:
            metrics |= self._train(batch, self.lorr.replay_number, step, prefix="pref/reuse_")
        return metrics

    # ---------------------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"initial_weights": self.initial_weights, "initial_batches": self.initial_batches, "resets": self.resets}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.initial_weights = state["initial_weights"]
        self.initial_batches = state["initial_batches"]
        self.resets = state["resets"]


_METRIC_NAMES = {"reward_margin": "margin", "reward_accuracy": "accuracy"}
"""The hybrid loss's metric names → the pref/ names (docs/metrics.md)."""


def _step_seed(seed: int, step: int, index: int) -> int:
    """A seed for one (step, pass) of one run: reproducible after a resume without saving generator states."""
    return (seed * 1_000_003 + step) * 1_009 + index


def _encode_pairs(rows: list[PreferenceRow], backend: Any, tokenizer: Any) -> PairBatch:
    """Offline pairs as two batches: prompts formatted with the run's template and left-padded, responses
    tokenized with the EOS token appended (as generated responses end) and right-padded."""
    problems = [Problem(id=f"pair{r.row}", question=r.prompt, answer="") for r in rows]
    prompt_ids, prompt_mask = backend._encode_prompts(problems)  # [P, L] each

    def responses(texts: list[str]) -> RolloutBatch:
        ids = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
        width = max(len(x) for x in ids)
        response_ids = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)  # [P, T]
        response_mask = torch.zeros(len(ids), width, dtype=torch.bool)  # [P, T]
        for i, x in enumerate(ids):
            response_ids[i, : len(x)], response_mask[i, : len(x)] = torch.tensor(x), True
        return RolloutBatch(
            problems=problems,
            group_index=torch.arange(len(rows)),
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            response_ids=response_ids,
            response_mask=response_mask,
            behaviour_logp=torch.zeros(len(ids), width),  # not sampled: there is no behaviour policy
            truncated=torch.zeros(len(ids), dtype=torch.bool),
            completions=list(texts),
        )

    chosen, rejected = responses([r.chosen for r in rows]), responses([r.rejected for r in rows])
    chosen.rewards, chosen.correct = torch.ones(len(rows)), torch.ones(len(rows), dtype=torch.bool)
    rejected.rewards, rejected.correct = torch.zeros(len(rows)), torch.zeros(len(rows), dtype=torch.bool)
    return PairBatch(chosen, rejected)
