"""LIMR offline selection: trajectories from stats.sqlite, gap filling, the LIM score, LINEAR and RAND, the
data file round trip, and `frugalrl selection limr` end to end on a tiny run."""

import json

import pytest
import torch

from frugalrl.cli import main
from frugalrl.config import load_config
from frugalrl.data import problems_of
from frugalrl.data.arithmetic import make_problems
from frugalrl.selection.limr import (
    LimrInputError,
    accuracy_table,
    epoch_counts,
    fill_gaps,
    lim_scores,
    linear_curve,
    mean_curve,
    select_at_threshold,
    select_random,
    select_top,
)
from frugalrl.selection.limr_output import problem_row, write_problems
from frugalrl.tracking import StatsStore
from frugalrl.tracking.stats import PromptStat
from frugalrl.training.trainer import Trainer
from frugalrl.types import Problem

# Worked example, 4 prompts × 3 epochs:
#   A = [0.25, 0.5, 0.75]   B = [0, 0, 0.25]   C = [1, 1, 1]   D = [0.75, 0.5, 1]
#   r̄ = [(0.25+0+1+0.75)/4, (0.5+0+1+0.5)/4, (0.75+0.25+1+1)/4] = [0.5, 0.5, 0.75]
#   Σ_k (1 − r̄^k)² = 0.25 + 0.25 + 0.0625 = 0.5625
#   A: 0.0625 + 0 + 0 = 0.0625            → s = 1 − 0.0625/0.5625 = 8/9
#   B: 0.25 + 0.25 + 0.25 = 0.75          → s = 1 − 0.75/0.5625 = −1/3 (below 0: scores are unbounded below)
#   C: 0.25 + 0.25 + 0.0625 = 0.5625      → s = 0 (always solved)
#   D: 0.0625 + 0 + 0.0625 = 0.125        → s = 1 − 0.125/0.5625 = 7/9
WORKED = torch.tensor([[0.25, 0.5, 0.75], [0.0, 0.0, 0.25], [1.0, 1.0, 1.0], [0.75, 0.5, 1.0]], dtype=torch.float64)


def test_worked_example_scores():
    reference = mean_curve(WORKED)
    assert reference.tolist() == [0.5, 0.5, 0.75]
    scores = lim_scores(WORKED, reference)
    torch.testing.assert_close(scores, torch.tensor([8 / 9, -1 / 3, 0.0, 7 / 9], dtype=torch.float64))
    assert select_at_threshold(["A", "B", "C", "D"], scores, 0.6) == ["A", "D"]


def test_a_curve_equal_to_the_mean_scores_one_and_always_solved_scores_zero():
    # The third row is the mean of the three: ([0, .25, .5] + [.5, .75, 1] + [.25, .5, .75]) / 3.
    accuracy = torch.tensor([[0.0, 0.25, 0.5], [0.5, 0.75, 1.0], [0.25, 0.5, 0.75]], dtype=torch.float64)
    reference = mean_curve(accuracy)
    assert lim_scores(accuracy, reference)[2].item() == 1.0
    solved = torch.ones(1, 3, dtype=torch.float64)
    assert lim_scores(solved, reference).item() == 0.0


def test_threshold_keeps_scores_equal_to_it():
    scores = torch.tensor([0.6, 0.5999999, 0.7, -3.0], dtype=torch.float64)
    assert select_at_threshold(["a", "b", "c", "d"], scores, 0.6) == ["a", "c"]


def test_an_all_solved_pool_is_an_error_not_a_division_by_zero():
    solved = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(LimrInputError, match="solved in every epoch"):
        lim_scores(solved, mean_curve(solved))


def test_linear_reference_is_the_line_from_first_to_last_mean():
    # r̄ = [0.5, 0.5, 0.75] → the line from 0.5 to 0.75 over 3 epochs: [0.5, 0.625, 0.75].
    line = linear_curve(mean_curve(WORKED))
    assert line.tolist() == [0.5, 0.625, 0.75]
    # A against the line: 0 + 0.125² + 0 = 0.015625 + (−0.25)² = 0.078125 over
    # Σ (1 − ℓ)² = 0.25 + 0.140625 + 0.0625 = 0.453125 → s = 1 − 0.078125/0.453125 = 1 − 5/29 = 24/29.
    assert lim_scores(WORKED[:1], line).item() == pytest.approx(24 / 29)
    assert linear_curve(torch.tensor([0.3], dtype=torch.float64)).tolist() == [0.3]


def test_gaps_are_filled_once_from_the_next_epoch_and_prompts_with_gaps_left_are_dropped():
    table = {
        "a": [None, 0.5, None, 0.75],  # both gaps have a measured next epoch → [0.5, 0.5, 0.75, 0.75]
        "b": [0.25, None, None, 1.0],  # epoch 3 fills from epoch 4, epoch 2's next is a gap → dropped
        "c": [0.5, 0.5, 0.5, None],  # a gap in the last epoch has no next → dropped
        "d": [1.0, 1.0, 1.0, 1.0],
    }
    traj = fill_gaps(table)
    assert traj.prompt_ids == ["a", "d"]
    assert traj.accuracy.tolist() == [[0.5, 0.5, 0.75, 0.75], [1.0, 1.0, 1.0, 1.0]]
    assert traj.dropped == ["b", "c"]
    assert traj.filled == 3  # a's two and b's one
    assert traj.epochs == 4


def _store(path, rows):
    """rows: {step: [(prompt_id, samples, correct), ...]}."""
    with StatsStore(path) as stats:
        for step, stats_rows in rows.items():
            stats.record(step, [PromptStat(pid, n, c, None, 0) for pid, n, c in stats_rows])
    return StatsStore(path)


def test_epoch_counts_keep_complete_epochs_and_runs_pool_their_responses(tmp_path):
    # Epochs of 2 steps: epoch 0 = steps 1-2, epoch 1 = steps 3-4; step 5 is a partial epoch, left out.
    one = _store(
        tmp_path / "one.sqlite",
        {1: [("p", 8, 2)], 2: [("p", 8, 4), ("q", 8, 8)], 3: [("q", 8, 8)], 4: [("p", 8, 8)], 5: [("p", 8, 0)]},
    )
    two = _store(tmp_path / "two.sqlite", {1: [("p", 8, 0)], 3: [("p", 8, 4)], 4: [("q", 4, 1)]})
    with one, two:
        counts = [epoch_counts(one, epoch_steps=2), epoch_counts(two, epoch_steps=2)]
    assert counts[0] == [{"p": (16, 6), "q": (8, 8)}, {"p": (8, 8), "q": (8, 8)}]
    table = accuracy_table(counts)
    # p: epoch 0 (2+4+0)/(8+8+8) = 0.25, epoch 1 (8+4)/(8+8) = 0.75; q: epoch 0 8/8, epoch 1 (8+1)/(8+4) = 0.75
    assert table == {"p": [0.25, 0.75], "q": [1.0, 0.75]}


def test_epoch_counts_refuse_an_empty_run_and_an_epoch_longer_than_the_run(tmp_path):
    with _store(tmp_path / "empty.sqlite", {}) as empty, pytest.raises(LimrInputError, match="no statistics"):
        epoch_counts(empty, epoch_steps=2)
    with _store(tmp_path / "short.sqlite", {1: [("p", 8, 2)], 2: [("p", 8, 2)]}) as short:
        with pytest.raises(LimrInputError, match="covers 2 steps, fewer than one epoch of 3"):
            epoch_counts(short, epoch_steps=3)


def test_rand_draws_the_count_reproducibly_from_the_seed():
    ids = [f"p{i:02d}" for i in range(40)]
    draw = select_random(ids, 7, seed=3)
    assert len(draw) == len(set(draw)) == 7 and set(draw) <= set(ids)
    assert select_random(list(reversed(ids)), 7, seed=3) == draw  # independent of the input order
    assert len({tuple(select_random(ids, 7, seed=s)) for s in range(5)}) > 1  # the seed matters
    with pytest.raises(LimrInputError, match="--count must be 1..40"):
        select_random(ids, 41, seed=0)


def test_top_count_breaks_ties_by_id():
    scores = torch.tensor([0.5, 0.9, 0.5, 0.1], dtype=torch.float64)
    assert select_top(["d", "c", "a", "b"], scores, 2) == ["c", "a"]


def test_data_file_reads_back_the_same_problems(tmp_path):
    problems = [
        *make_problems(6, seed=0, levels=[4, 5], split="train"),  # negative answers among them
        Problem("x1", "Total?", "1,5", level=None, fields={"source": "hand"}),
        Problem("x2", "Sum?", "\\frac{1}{2}", level=3, fields={"source": "hand"}),
    ]
    with pytest.raises(ValueError, match="would be read back as '5'"):  # auto would parse it as GSM8K's #### 5
        problem_row(Problem("x3", "Total?", "#### 5"))
    path = tmp_path / "subset.jsonl"
    write_problems(path, problems[:6])
    config = load_config(None, ["data.source=file", f"data.path={path}", f"data.eval_path={path}"])
    assert problems_of(config.data)[0] == problems[:6]
    write_problems(path, problems[6:])
    assert problems_of(config.data)[0] == problems[6:]  # no level column: None; fields kept


# --- the CLI on a tiny run -------------------------------------------------------------------------------

TINY_RUN = [
    "model.path=testbed-arith",  # the first testbed (arithmetic): short answers keep these runs fast
    "data.source=arithmetic",
    "run.progress=false",
    "run.threads=2",
    "data.levels=[1,4,5,6]",
    "data.train_size=16",
    "data.eval_size=8",
    "trainer.prompts_per_step=8",  # 2 steps an epoch
    "trainer.max_steps=6",  # 3 epochs
    "trainer.checkpoint_every=0",
    "rollout.group_size=4",
    "rollout.max_new_tokens=40",
    "eval.at_start=false",
    "eval.every=0",
    "eval.num_problems=8",
    "eval.k=1",
    "eval.greedy=false",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("limr") / "collect"
    Trainer(load_config(None, [*TINY_RUN, f"run.dir={run_dir}"])).run()
    return run_dir


def _limr_cli(capsys, *args):
    main(["selection", "limr", *map(str, args)])
    return capsys.readouterr().out


def test_cli_writes_a_subset_that_data_source_file_reads(tiny_run, tmp_path, capsys):
    out = tmp_path / "sel"
    summary = _limr_cli(capsys, tiny_run, "--out", out, "--threshold", "-0.5")
    assert "from 3 epochs of 2 steps" in summary
    scores = json.loads((out / "scores.json").read_text())
    assert scores["epochs"] == 3 and scores["epoch_steps"] == 2 and scores["pool"] == 16
    prompts = scores["prompts"]
    # Recompute every score from the stored trajectories, independently of the module.
    reference = [sum(p["trajectory"][k] for p in prompts.values()) / len(prompts) for k in range(3)]
    norm = sum((1 - r) ** 2 for r in reference)
    for entry in prompts.values():
        distance = sum((a - r) ** 2 for a, r in zip(entry["trajectory"], reference, strict=True))
        assert entry["score"] == pytest.approx(1 - distance / norm)
        assert entry["selected"] == (entry["score"] >= -0.5)
    chosen = {pid for pid, entry in prompts.items() if entry["selected"]}
    assert chosen and scores["selected"] == len(chosen)

    run_config = load_config(tiny_run / "config.yaml")
    pool, held_out = problems_of(run_config.data)
    subset = load_config(
        None, ["data.source=file", f"data.path={out / 'train.jsonl'}", f"data.eval_path={out / 'eval.jsonl'}"]
    )
    train, evaluated = problems_of(subset.data)
    assert train == [p for p in pool if p.id in chosen]  # ids, questions, answers, levels and fields kept
    assert evaluated == held_out
    assert (out / "trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_baselines_rand_linear_full(tiny_run, tmp_path, capsys):
    _limr_cli(capsys, tiny_run, "--out", tmp_path / "rand", "--method", "rand", "--count", "5", "--seed", "1")
    rand = [json.loads(line)["id"] for line in (tmp_path / "rand/train.jsonl").read_text().splitlines()]
    pool = [p.id for p in problems_of(load_config(tiny_run / "config.yaml").data)[0]]
    assert sorted(rand) == select_random(pool, 5, seed=1)
    _limr_cli(capsys, tiny_run, "--out", tmp_path / "lin", "--method", "linear", "--count", "3")
    linear = json.loads((tmp_path / "lin/scores.json").read_text())["prompts"]
    top = sorted(linear, key=lambda pid: (-linear[pid]["linear_score"], pid))[:3]
    assert sorted(pid for pid, e in linear.items() if e["selected"]) == sorted(top)
    _limr_cli(capsys, tiny_run, "--out", tmp_path / "full", "--method", "full")
    assert len((tmp_path / "full/train.jsonl").read_text().splitlines()) == 16


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_stats", "has no stats.sqlite"),
        ("long_epoch", "fewer than one epoch of 100"),
        ("nothing_selected", "no prompt has a limr score >= 2.0"),
        ("count_too_large", "--count must be 1..16"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tiny_run, tmp_path, capsys, case, message):
    no_stats = tmp_path / "no_stats"  # a run directory whose statistics are missing
    no_stats.mkdir()
    (no_stats / "config.yaml").write_text((tiny_run / "config.yaml").read_text())
    args = {
        "no_stats": [no_stats],
        "long_epoch": [tiny_run, "--epoch-steps", "100"],
        "nothing_selected": [tiny_run, "--threshold", "2"],
        "count_too_large": [tiny_run, "--method", "rand", "--count", "17"],
    }[case]
    with pytest.raises(SystemExit) as exit_info:
        _limr_cli(capsys, *args, "--out", tmp_path / "out")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
