"""Group filters, batch concatenation and dynamic sampling in the trainer."""

import pytest
import torch

from frugalrl.config import load_config
from frugalrl.selection import apply_filters, group_filters
from frugalrl.tracking import read_metrics
from frugalrl.training.trainer import Trainer
from frugalrl.types import Problem, RolloutBatch, concat_batches

covers = pytest.mark.covers

# groups: 0 all correct, 1 all wrong, 2 mixed, 3 a single correct response, 4 a single wrong one
CORRECT = torch.tensor([True, True, False, False, True, False, True, False])
GROUPS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 4])


@covers("group filter", "drop_all_correct")
def test_filter_drop_all_correct():
    keep = group_filters.get("drop_all_correct")(CORRECT, GROUPS)
    assert keep.tolist() == [False, False, True, True, True, True, False, True]


@covers("group filter", "drop_all_wrong")
def test_filter_drop_all_wrong():
    keep = group_filters.get("drop_all_wrong")(CORRECT, GROUPS)
    assert keep.tolist() == [True, True, False, False, True, True, True, False]


@covers("group filter", "drop_zero_variance")
def test_filter_drop_zero_variance_keeps_only_mixed_groups():
    keep = group_filters.get("drop_zero_variance")(CORRECT, GROUPS)
    assert keep.tolist() == [False, False, False, False, True, True, False, False]


def test_filters_compose_and_tolerance_applies_to_the_correct_share():
    assert apply_filters([], CORRECT, GROUPS).all()
    both = apply_filters(["drop_all_correct", "drop_all_wrong"], CORRECT, GROUPS)
    assert torch.equal(both, group_filters.get("drop_zero_variance")(CORRECT, GROUPS))
    # soft labels: a share of 0.999 counts as all correct with tol 0.01, not with the default tolerance
    soft = torch.tensor([0.999, 0.999])
    ids = torch.tensor([0, 0])
    assert not group_filters.get("drop_all_correct")(soft, ids, tol=0.01).any()
    assert group_filters.get("drop_all_correct")(soft, ids).all()


def _batch(n_groups: int, prompt_width: int, response_width: int, tag: str) -> RolloutBatch:
    rows = 2 * n_groups
    return RolloutBatch(
        problems=[Problem(f"{tag}{g}", "q", "1") for g in range(n_groups)],
        group_index=torch.arange(n_groups).repeat_interleave(2),
        prompt_ids=torch.full((rows, prompt_width), 7),
        prompt_mask=torch.ones(rows, prompt_width, dtype=torch.bool),
        response_ids=torch.full((rows, response_width), 9),
        response_mask=torch.ones(rows, response_width, dtype=torch.bool),
        behaviour_logp=torch.full((rows, response_width), -0.5),
        truncated=torch.zeros(rows, dtype=torch.bool),
        completions=[f"{tag}{i}" for i in range(rows)],
        rewards=torch.ones(rows),
        correct=torch.ones(rows, dtype=torch.bool),
    )


def test_concat_batches_repads_and_offsets_groups():
    a, b = _batch(2, 3, 5, "a"), _batch(1, 4, 2, "b")
    out = concat_batches([a, b], pad_id=0)
    assert out.group_index.tolist() == [0, 0, 1, 1, 2, 2]
    assert [p.id for p in out.problems] == ["a0", "a1", "b0"]
    assert out.prompt_ids.shape == (6, 4) and out.response_ids.shape == (6, 5)
    assert out.prompt_mask[:4, 0].logical_not().all() and out.prompt_mask[:4, 1:].all()  # left padding
    assert out.response_mask[4:, 2:].logical_not().all() and out.behaviour_logp[4:, 2:].eq(0).all()
    assert out.problem_of_row(5).id == "b0" and out.completions[4] == "b0"


def test_dynamic_sampling_trains_only_on_informative_groups_within_the_round_limit(tmp_path):
    config = load_config(
        None,
        [
            "model.path=testbed-arith", "data.source=arithmetic", "run.progress=false", f"run.dir={tmp_path / 'run'}",
            "data.train_size=300",
            "data.eval_size=8", "trainer.prompts_per_step=6", "rollout.group_size=4", "trainer.max_steps=2",
            "eval.at_start=false", "eval.num_problems=8", "eval.k=2",
            "select.filters=[drop_zero_variance]", "select.dynamic_sampling=true", "select.max_rounds=3",
        ],
    )  # fmt: skip
    trainer = Trainer(config)
    batch, metrics = trainer.step(1)
    assert 1 <= metrics["data/sampling_rounds"] <= 3
    assert batch.num_rows == 24 * metrics["data/sampling_rounds"]
    # every trained row belongs to a mixed group, and at most B groups are trained on
    passed = apply_filters(["drop_zero_variance"], batch.correct, batch.group_index)
    trained_groups = int(metrics["data/kept_frac"] * batch.num_rows) // 4
    assert trained_groups <= 6 and trained_groups == min(6, len(batch.group_index[passed].unique()))
    assert metrics["data/filtered_responses"] == batch.num_rows - 4 * trained_groups


def test_filters_are_logged_through_a_whole_run(tmp_path):
    config = load_config(
        None,
        [
            "model.path=testbed-arith", "data.source=arithmetic", "run.progress=false", f"run.dir={tmp_path / 'run'}",
            "data.train_size=100",
            "data.eval_size=8", "trainer.prompts_per_step=4", "rollout.group_size=4", "trainer.max_steps=2",
            "eval.at_start=false", "eval.num_problems=8", "eval.k=2", "select.filters=[drop_all_wrong]",
        ],
    )  # fmt: skip
    Trainer(config).run()
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all(r["data/sampling_rounds"] == 1 for r in records)
    assert all(r["data/filtered_responses"] == 16 * r["data/frac_all_wrong"] for r in records)
