"""LoRR's pure pieces and preference pairs: hand-derived values on toy tensors."""

import math

import pytest
import torch

from frugalrl.algos.pairs import best_worst_pairs
from frugalrl.replay.lorr import matching_parameters, sft_weight, shrink_toward_initial

# group 0: rows 0-3 (two tied best, two tied worst); group 1: all equal (skipped); group 2: rows 8-11
REWARDS = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.2, 0.9, 0.2])
GROUPS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])


def test_pairs_take_best_against_worst_and_skip_all_equal_groups():
    pairs = best_worst_pairs(REWARDS, GROUPS, tie_break="first")
    # group 0: best rows {0, 2} → 0, worst {1, 3} → 1; group 1 skipped; group 2: best 10 (0.9), worst {9, 11} → 9
    assert pairs.chosen.tolist() == [0, 10]
    assert pairs.rejected.tolist() == [1, 9]
    assert pairs.group.tolist() == [0, 2]
    assert pairs.skipped == 1 and pairs.num_pairs == 2


def test_pairs_break_ties_at_random_but_reproducibly_from_the_seed():
    def draw(seed):
        pairs = best_worst_pairs(REWARDS, GROUPS, generator=torch.Generator().manual_seed(seed))
        return pairs.chosen.tolist(), pairs.rejected.tolist()

    assert draw(3) == draw(3)
    draws = [draw(seed) for seed in range(20)]
    # only tied rows are ever picked, and over 20 seeds both rows of each tie are
    assert {c[0] for c, _ in draws} == {0, 2} and {r[0] for _, r in draws} == {1, 3}
    assert {r[1] for _, r in draws} == {9, 11} and {c[1] for c, _ in draws} == {10}


def test_pairs_of_interleaved_groups_and_of_a_batch_with_no_preference():
    # groups need not be contiguous: group 5 = rows 0, 2 (rewards 0, 1); group 3 = rows 1, 3 (equal)
    pairs = best_worst_pairs(torch.tensor([0.0, 1.0, 1.0, 1.0]), torch.tensor([5, 3, 5, 3]), tie_break="first")
    assert (pairs.chosen.tolist(), pairs.rejected.tolist(), pairs.group.tolist(), pairs.skipped) == ([2], [0], [5], 1)
    none = best_worst_pairs(torch.zeros(4), torch.tensor([0, 0, 1, 1]))
    assert none.num_pairs == 0 and none.skipped == 2 and none.chosen.dtype == torch.long
    with pytest.raises(ValueError, match="tie_break"):
        best_worst_pairs(REWARDS, GROUPS, tie_break="last")


def test_sft_weight_schedules():
    # linear, L = 3, cap 0.5: λ_l = 0.5·l/3 → 1/6, 1/3, 1/2
    assert [sft_weight(i, 3, cap=0.5) for i in (1, 2, 3)] == pytest.approx([1 / 6, 1 / 3, 0.5])
    assert [sft_weight(i, 2, cap=0.4, schedule="constant") for i in (1, 2)] == [0.4, 0.4]
    assert sft_weight(1, 1, cap=0.5, schedule="none") == 0.0
    with pytest.raises(ValueError, match="1..3"):
        sft_weight(0, 3, cap=0.5)
    with pytest.raises(ValueError, match="unknown SFT schedule"):
        sft_weight(1, 3, cap=0.5, schedule="cosine")


def _toy_model_and_optimizer():
    model = torch.nn.ModuleDict(
        {"mlp": torch.nn.ModuleDict({"down_proj": torch.nn.Linear(2, 1, bias=True)}), "head": torch.nn.Linear(2, 1)}
    )
    with torch.no_grad():
        model["mlp"]["down_proj"].weight.copy_(torch.tensor([[2.0, 4.0]]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return model, optimizer


def test_reset_interpolates_selected_tensors_and_zeroes_only_their_moments():
    model, optimizer = _toy_model_and_optimizer()
    selected = matching_parameters(model, r"down_proj\.weight$")
    assert list(selected) == ["mlp.down_proj.weight"]
    initial = {"mlp.down_proj.weight": torch.tensor([[0.0, 8.0]])}
    # one optimiser step so every parameter has AdamW state; then put the selected weight back at [[2, 4]]
    model["head"](model["mlp"]["down_proj"](torch.ones(1, 2)).expand(1, 2)).sum().backward()
    optimizer.step()
    with torch.no_grad():
        selected["mlp.down_proj.weight"].copy_(torch.tensor([[2.0, 4.0]]))
    others = {n: p.detach().clone() for n, p in model.named_parameters() if n != "mlp.down_proj.weight"}
    other_state = {
        n: {k: v.clone() for k, v in optimizer.state[p].items()}
        for n, p in model.named_parameters()
        if n != "mlp.down_proj.weight"
    }
    change = shrink_toward_initial(selected, initial, optimizer, alpha=0.25)
    # 0.25·[2, 4] + 0.75·[0, 8] = [0.5, 7]; change [−1.5, 3]: ‖·‖/‖[2, 4]‖ = √11.25/√20 = 0.75
    assert torch.equal(model["mlp"]["down_proj"].weight, torch.tensor([[0.5, 7.0]]))
    assert float(change) == pytest.approx(0.75)
    state = optimizer.state[selected["mlp.down_proj.weight"]]
    assert set(state) >= {"step", "exp_avg", "exp_avg_sq"}
    assert all(float(v.abs().sum()) == 0.0 for v in state.values())
    for name, p in model.named_parameters():
        if name == "mlp.down_proj.weight":
            continue
        assert torch.equal(p, others[name]), name  # bit-identical
        for key, value in optimizer.state[p].items():
            assert torch.equal(value, other_state[name][key]), (name, key)
        assert float(optimizer.state[p]["exp_avg_sq"].abs().sum()) > 0  # they really had moments


def test_reset_alpha_bounds():
    model, optimizer = _toy_model_and_optimizer()
    selected = matching_parameters(model, "down_proj.weight")
    initial = {"mlp.down_proj.weight": torch.tensor([[0.0, 8.0]])}
    assert float(shrink_toward_initial(selected, initial, None, alpha=1.0)) == 0.0  # α = 1: no change
    assert torch.equal(model["mlp"]["down_proj"].weight, torch.tensor([[2.0, 4.0]]))
    change = shrink_toward_initial(selected, initial, None, alpha=0.0)  # α = 0: back to W_0
    assert torch.equal(model["mlp"]["down_proj"].weight, torch.tensor([[0.0, 8.0]]))
    assert float(change) == pytest.approx(math.sqrt(4 + 16) / math.sqrt(20))  # ‖[−2, 4]‖/‖[2, 4]‖ = 1
    with pytest.raises(ValueError, match="alpha"):
        shrink_toward_initial(selected, initial, None, alpha=1.5)
