"""One policy (and critic) update of several recipes on one fixed batch, for tests/test_distributed.py.

    python tests/distributed_cases.py MODEL_DIR OUT_DIR                                   # one process
    torchrun --nproc-per-node 2 tests/distributed_cases.py MODEL_DIR OUT_DIR [ddp|fsdp]    # two ranks

Every process builds the same batch (sampled by the model at MODEL_DIR with a fixed seed, rewards from a
fixed pattern), then for each case runs the recipe's update from the same weights and writes, per rank,
`OUT_DIR/rank<r>.pt`: each case's update metrics, the policy's last optimiser step's gradients and the
weights after the update (policy, and the critic's for PPO). On two ranks each rank trains on its share of
the rows; with fsdp the policy's weights are sharded (FSDP2) and the full gradients and weights are
gathered for the file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from frugalrl.algos import AdvantageInputs, advantage_estimators
from frugalrl.config import load_config
from frugalrl.data import make_problems, plain_prompt
from frugalrl.engine import distributed
from frugalrl.engine.checkpoint import load_checkpoint, save_checkpoint
from frugalrl.engine.lora import reference_model
from frugalrl.engine.policy import load_policy
from frugalrl.engine.rollout import HFGenerateBackend
from frugalrl.engine.update import policy_update
from frugalrl.replay import replay_kinds
from frugalrl.training.build import build_critic, build_optimizer, update_settings
from frugalrl.types import SamplingParams

REPO = Path(__file__).resolve().parents[1]

# (name, recipe, overrides, replayed groups): micro-batches of 5 rows, so accumulation runs and the two
# ranks' shares (rows 0, 2, 4, ... and 1, 3, 5, ... of the length-sorted mini-batch) differ in size.
CASES = [
    ("grpo", "grpo.yaml", [], 0),
    ("grpo_epochs_kl", "grpo.yaml", ["trainer.epochs=2", "trainer.mini_batches=2", "algo.kl_coef=0.1"], 0),
    ("rloo", "rloo.yaml", [], 0),
    ("reinforce_rej", "reinforce_rej.yaml", [], 0),
    ("rr", "grpo_rr.yaml", [], 2),
    ("repo", "repo.yaml", [], 2),
    ("ppo", "ppo.yaml", ["rollout.group_size=4"], 0),
]
GROUPS, G = 6, 4


def fixed_batch(model_dir: str):
    """The same scored batch in every process: 6 problems × 4 responses, rewards from a fixed pattern."""
    policy = load_policy(model_dir)
    backend = HFGenerateBackend(policy.model, policy.tokenizer, format_prompt=plain_prompt, token_budget=400)
    torch.manual_seed(1)
    batch = backend.generate(make_problems(GROUPS, seed=3), SamplingParams(n=G, temperature=1.0, max_new_tokens=10))
    # groups 0 and 3 all wrong (Reinforce-Rej drops them), the others mixed
    correct = torch.tensor([i % G in (0, 2) and i // G not in (0, 3) for i in range(GROUPS * G)])
    batch.correct, batch.rewards = correct, correct.float()
    return batch


def run_case(model_dir: str, batch, recipe: str, overrides: list[str], replayed_groups: int, *, fsdp: bool):
    cfg = load_config(REPO / "configs" / recipe, [f"model.path={model_dir}", "trainer.micro_batch_size=5", *overrides])
    policy = load_policy(model_dir)
    ref = reference_model(policy) if cfg.algo.kl_coef > 0 else None
    if fsdp:
        distributed.shard_model(policy.model)
    optimizer, _ = build_optimizer(policy.model, cfg.trainer)
    critic = build_critic(cfg)
    replay = replay_kinds.get(cfg.replay.kind)(seed=0, **cfg.replay.args)
    signed = cfg.algo.reward == "correctness_pm1"
    rewards = batch.rewards * 2 - 1 if signed else batch.rewards
    is_off = batch.group_index >= GROUPS - replayed_groups  # [N]: the last groups count as replayed
    inputs = AdvantageInputs.of(rewards, batch.group_index, correct=batch.correct)
    inputs, old_values, _ = critic.advantage_inputs(inputs, batch, ref)
    adv = advantage_estimators.get(cfg.algo.advantage)(inputs, **cfg.algo.advantage_args)
    rows = batch.select(adv.keep)
    torch.manual_seed(5)  # the mini-batch order, alike in every process
    metrics = policy_update(
        policy.model, optimizer, rows, adv.advantages[adv.keep], update_settings(cfg),
        ref_model=ref, is_off=is_off[adv.keep], loss_inputs=replay.loss_inputs,
    )  # fmt: skip
    kept = [None if x is None else x[adv.keep] for x in (adv.returns, old_values)]
    metrics |= critic.update(rows, *kept)
    out = {"metrics": {k: float(v) for k, v in metrics.items()}, "rows": rows.num_rows}
    for name, model in (("policy", policy.model), ("critic", getattr(critic, "model", None))):
        if model is not None:
            grads = [distributed.local_value(p.grad) for p in model.parameters() if p.grad is not None]
            if grads:  # the critic clears its gradients after its step: its weights and grad_norm stand for them
                out[f"{name}_grad"] = torch.cat([g.reshape(-1) for g in grads])
            out[f"{name}_weights"] = torch.cat(
                [distributed.local_value(p.detach()).reshape(-1) for p in model.parameters()]
            )
    return out, policy, optimizer


def main(model_dir: str, out_dir: str, strategy: str = "ddp") -> None:
    torch.set_num_threads(1)
    distributed.start("cpu", timeout=120)
    batch = fixed_batch(model_dir)
    fsdp = strategy == "fsdp"
    results, round_trip = {}, None
    for name, *case in CASES:
        results[name], policy, optimizer = run_case(model_dir, batch, *case, fsdp=fsdp)
        if fsdp and name == "grpo":
            round_trip = checkpoint_round_trip(model_dir, policy, optimizer, Path(out_dir) / "checkpoint")
    rank, size = distributed.world()
    torch.save({"world_size": size, "cases": results, "round_trip": round_trip}, Path(out_dir) / f"rank{rank}.pt")
    distributed.stop()


def checkpoint_round_trip(model_dir: str, policy, optimizer, path: Path) -> bool:
    """fsdp: the sharded policy and optimiser saved as a checkpoint (gathered by every rank, written by rank 0)
    and loaded into a fresh sharded copy; whether this rank's shards and optimiser state came back equal."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    gathered = distributed.gathered_state(policy.model, optimizer)
    if distributed.is_main():
        save_checkpoint(path, policy, optimizer, scheduler, {}, gathered=gathered)
    distributed.from_main(None)  # the others wait for the files
    fresh = load_policy(model_dir)
    distributed.shard_model(fresh.model)
    fresh_optimizer = torch.optim.AdamW(fresh.model.parameters())
    load_checkpoint(path, fresh, fresh_optimizer, torch.optim.lr_scheduler.LambdaLR(fresh_optimizer, lambda _: 1.0))
    pairs = list(zip(policy.model.parameters(), fresh.model.parameters(), strict=True))
    same = all(torch.equal(a.to_local(), b.to_local()) for a, b in pairs)
    for a, b in pairs:
        before, after = optimizer.state[a], fresh_optimizer.state[b]
        same &= all(torch.equal(distributed.local_value(before[k]), distributed.local_value(after[k])) for k in before)
    return same


if __name__ == "__main__":
    main(*sys.argv[1:])
