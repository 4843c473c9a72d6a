"""Critics (`critic.kind`): `none`, and PPO's `value_model` — a value model, its token values, and its
clipped regression update. The trainer calls the same three methods whatever the kind:

    inputs, old_values, metrics = critic.advantage_inputs(inputs, batch, ref_model)   → before the estimator
    metrics = critic.update(batch, returns, old_values)                                → after the policy update
    critic.state_dict() / critic.load_state_dict(state)                                → checkpoints

The value model is the policy's architecture with the language-model head replaced by a fresh scalar head,
its transformer initialised from the policy's weights (ALGORITHMS.md §3). V_t, the value of the state in
which response token t is about to be generated, is read from the hidden state of the column before that
token, the same column whose logits give log π(o_t), so values and log-probs line up token for token.

On a LoRA policy (`model.lora`) the value model loads no second copy of the base: it is the policy's own
transformer run under a second LoRA adapter, `critic` (`SharedBaseValueModel`), plus the head; only that
adapter and the head train, and checkpoints hold only them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from transformers import AutoModel

from frugalrl.algos import AdvantageInputs, aggregation_weights, clipped_value_loss, kl_estimators
from frugalrl.engine.passes import micro_chunks, run_passes
from frugalrl.engine.policy import DTYPES, Policy, sequence_inputs
from frugalrl.engine.update import batch_logprobs
from frugalrl.registry import Registry
from frugalrl.types import RolloutBatch


class ValueModel(nn.Module):
    """A transformer body with a scalar head: hidden state [n, L, H] → value [n, L]."""

    def __init__(self, body: nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(hidden_size, 1)
        # A zero head starts every value at 0: the first advantages are the (whitened) returns themselves,
        # instead of returns minus noise from a random projection of the policy's features.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_policy(cls, path: str | Path, *, device: str = "cpu", dtype: str = "float32") -> ValueModel:
        """The transformer of the causal LM at `path` (its LM head dropped) plus a fresh scalar head."""
        body = AutoModel.from_pretrained(path, dtype=DTYPES[dtype])
        model = cls(body, body.config.hidden_size).to(device)
        model.head.to(torch.float32)  # values are regression targets; keep the head in full precision
        return model

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        hidden = self.body(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # [n, L, H]
        return self.head(hidden.float()).squeeze(-1)  # [n, L]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the critic's optimiser updates and its gradient clipping measures."""
        return list(self.parameters())

    def own_state_dict(self) -> dict[str, Any]:
        """The critic's weights in a checkpoint."""
        return self.state_dict()

    def load_own_state_dict(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state)


class SharedBaseValueModel(ValueModel):
    """A LoRA policy's value model: the policy's own transformer — the very tensors of its frozen base — run
    under a second LoRA adapter, `critic`, in place of the policy's, plus the scalar head. The adapter starts
    at B = 0, so V's features start as the base's, as a separate value model's would (initialised from the
    policy's starting weights); it and the head are all that train."""

    adapter_name = "critic"

    def __init__(self, policy: Policy, *, device: str | torch.device = "cpu") -> None:
        from frugalrl.engine.lora import add_adapter

        body = policy.model.base_model  # the causal LM's transformer (its LM head left out), adapters inside
        super().__init__(body, body.config.hidden_size)
        self.head.to(device=device, dtype=torch.float32)
        self.policy = policy  # a plain attribute: the policy's modules are reached through `body` only
        add_adapter(policy, self.adapter_name)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        from frugalrl.engine.lora import active_adapter

        with active_adapter(self.policy, self.adapter_name):
            return super().forward(input_ids, attention_mask, position_ids)

    def trainable_parameters(self) -> list[nn.Parameter]:
        from frugalrl.engine.lora import adapter_parameters

        return [*adapter_parameters(self.policy, self.adapter_name), *self.head.parameters()]

    def own_state_dict(self) -> dict[str, Any]:
        from frugalrl.engine.lora import adapter_state

        return {"adapter": adapter_state(self.policy, self.adapter_name), "head": self.head.state_dict()}

    def load_own_state_dict(self, state: dict[str, Any]) -> None:
        from frugalrl.engine.lora import load_adapter_state

        load_adapter_state(self.policy, self.adapter_name, state["adapter"])
        self.head.load_state_dict(state["head"])


def response_values(critic: ValueModel, batch: RolloutBatch) -> Tensor:
    """V_t [n, T] for every response token of `batch` (0 on padding); gradients flow if enabled."""
    device = critic.device
    input_ids, attention_mask, position_ids, prompt_width = sequence_inputs(batch)
    width = input_ids.shape[1] - prompt_width
    values = critic(input_ids.to(device), attention_mask.to(device), position_ids.to(device))  # [n, L]
    values = values[:, prompt_width - 1 : -1]  # [n, width]: column c holds the state before token c + 1
    values = values * batch.response_mask[:, :width].to(device)
    return nn.functional.pad(values, (0, batch.response_ids.shape[1] - width))


@dataclass(frozen=True)
class CriticSettings:
    lr: float = 1e-3
    value_clip: float = 0.2
    epochs: int = 1
    mini_batches: int = 1
    micro_batch_size: int = 0
    grad_clip: float = 1.0
    kl_in_reward: float = 0.0  # β of the per-token −β·k1 reward (0: none)
    temperature: float = 1.0
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW's, the policy's by default (trainer.betas)


class CriticPart(Protocol):
    def advantage_inputs(
        self, inputs: AdvantageInputs, batch: RolloutBatch, ref_model: nn.Module | None
    ) -> tuple[AdvantageInputs, Tensor | None, dict[str, float]]: ...

    def update(self, batch: RolloutBatch, returns: Tensor | None, old_values: Tensor | None) -> dict[str, Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


critics: Registry[Any] = Registry("critic")


class NoCritic:
    """Outcome advantages only: nothing to add, nothing to train."""

    def advantage_inputs(
        self, inputs: AdvantageInputs, batch: RolloutBatch, ref_model: nn.Module | None
    ) -> tuple[AdvantageInputs, Tensor | None, dict[str, float]]:
        return inputs, None, {}

    def update(self, batch: RolloutBatch, returns: Tensor | None, old_values: Tensor | None) -> dict[str, Tensor]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Critic:
    """The value model, its optimiser, and the two things PPO asks of it each step.

    `advantage_inputs` adds V_t and the token rewards to the outcome inputs before GAE; `update` regresses
    V on the GAE returns with the clipped value loss, after the policy update.
    """

    def __init__(self, model: ValueModel, settings: CriticSettings) -> None:
        self.model, self.settings = model, settings
        self.params = model.trainable_parameters()
        self.optimizer = torch.optim.AdamW(self.params, lr=settings.lr, betas=settings.betas)

    @torch.no_grad()
    def values(self, batch: RolloutBatch) -> Tensor:
        """V_t [N, T] of the whole batch, micro-batch by micro-batch."""
        rows = torch.arange(batch.num_rows)
        return torch.cat([response_values(self.model, batch.select(r)).cpu() for r in micro_chunks(rows, self._micro)])

    def advantage_inputs(
        self, inputs: AdvantageInputs, batch: RolloutBatch, ref_model: nn.Module | None
    ) -> tuple[AdvantageInputs, Tensor, dict[str, float]]:
        """GAE's inputs for `batch`: values, mask and token rewards −β·k1(π_old, π_ref) when β > 0.

        k1 uses the behaviour log-probs: they are π_old's at the sampling temperature, so no extra forward
        of the policy is needed. Returns the inputs, the values (the old values of the clipped loss) and,
        with a KL reward, critic/kl_reward: the mean k1 per response token that the reward subtracts β times.
        """
        values = self.values(batch)  # [N, T]
        token_rewards = torch.zeros_like(values)  # [N, T]
        metrics: dict[str, float] = {}
        beta = self.settings.kl_in_reward
        if beta > 0:
            if ref_model is None:
                raise ValueError("a KL reward needs a reference model")
            ref_logp = batch_logprobs(ref_model, batch, temperature=self.settings.temperature, micro=self._micro)
            kl = kl_estimators.get("k1")(batch.behaviour_logp, ref_logp)  # [N, T]
            token_rewards = -beta * kl * batch.response_mask  # [N, T]
            metrics["critic/kl_reward"] = float(
                (kl * batch.response_mask).sum() / batch.response_mask.sum().clamp(min=1)
            )
        full = AdvantageInputs(
            rewards=inputs.rewards,
            group_ids=inputs.group_ids,
            correct=inputs.correct,
            mask=batch.response_mask,
            values=values,
            token_rewards=token_rewards,
        )
        return full, values, metrics

    def update(self, batch: RolloutBatch, returns: Tensor, old_values: Tensor) -> dict[str, Tensor]:
        """Regress V on `returns` [N, T] with the clipped value loss; returns detached metrics (critic/...)."""
        s, n = self.settings, batch.num_rows
        if n == 0:
            return {}
        return run_passes(
            lambda rows: self._step(batch, returns, old_values, rows), n, epochs=s.epochs, mini_batches=s.mini_batches
        )

    def _step(self, batch: RolloutBatch, returns: Tensor, old_values: Tensor, rows: Tensor) -> dict[str, Tensor]:
        device = self.model.device
        weights = aggregation_weights(batch.response_mask[rows], agg="token_mean")  # [m, T], sums to 1
        sums: dict[str, Tensor] = defaultdict(lambda: torch.zeros((), device=device))
        self.optimizer.zero_grad(set_to_none=True)
        for local in micro_chunks(torch.arange(len(rows)), self._micro):
            sub = batch.select(rows[local])
            values = response_values(self.model, sub)  # [n, T]
            loss, metrics = clipped_value_loss(
                values,
                old_values[rows[local]].to(device),
                returns[rows[local]].to(device),
                sub.response_mask.to(device),
                clip=self.settings.value_clip,
                agg_weights=weights[local].to(device),
            )
            loss.backward()
            sums["critic/loss"] += loss.detach()
            for key, value in metrics.items():
                sums[f"critic/{key}"] += value.detach() * len(local) / len(rows)
        max_norm = self.settings.grad_clip if self.settings.grad_clip > 0 else float("inf")
        sums["critic/grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.optimizer.step()
        # No gradient stays behind: a LoRA critic's adapter lives in the policy's model, whose update clips
        # the gradient norm over all of the model's parameters.
        self.optimizer.zero_grad(set_to_none=True)
        return {k: v.detach().cpu() for k, v in sums.items()}

    @property
    def _micro(self) -> int:
        return self.settings.micro_batch_size

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.own_state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_own_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


@critics.register("none")
def no_critic(
    model_path: str, settings: CriticSettings, *, device: str, dtype: str, policy: Policy | None = None
) -> NoCritic:
    """No critic: outcome advantages (every estimator but GAE)."""
    del model_path, settings, device, dtype, policy
    return NoCritic()


@critics.register("value_model", provides=("critic",))
def value_model_critic(
    model_path: str, settings: CriticSettings, *, device: str, dtype: str, policy: Policy | None = None
) -> Critic:
    """PPO's value model, initialised from the policy's starting weights at `model_path`, with its optimiser.
    With a LoRA `policy` (adapters built, optimiser not yet holding a critic): a second adapter on its frozen
    base and a head (`SharedBaseValueModel`), no second copy of the model."""
    if policy is not None and policy.adapter is not None:
        return Critic(SharedBaseValueModel(policy, device=device), settings)
    return Critic(ValueModel.from_policy(model_path, device=device, dtype=dtype), settings)
