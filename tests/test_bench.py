"""The sample-efficiency bench: time-to-target on hand-made metrics, seed aggregation, and a real tiny bench."""

import json
import math
import shlex
import sys
from pathlib import Path

import pytest

from frugalrl.bench import (
    BenchSpec,
    Budget,
    EvalPoint,
    Recipe,
    compare,
    first_crossing,
    mean_curve,
    run_action,
    run_bench,
    run_matrix,
    summarise,
)
from frugalrl.bench.runner import BenchRunError, plan_matrix, train_command
from frugalrl.cli.bench import build_parser, spec_from_args
from frugalrl.config import load_config
from frugalrl.tracking import COMMIT_MARKER, read_metrics

METRIC = "eval/avg@8"
GRPO_YAML = Path(__file__).resolve().parents[1] / "configs" / "grpo.yaml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _records(*evals):
    """Metrics records of one run from (step, seconds, responses, accuracy) evaluation points, with a training
    record between evaluations (no eval key: must be ignored) and the evaluation logged as a separate record
    of its step (merged by step)."""
    records = []
    for step, seconds, responses, accuracy in evals:
        if step > 0:
            records.append({"step": step - 1, "time/train_elapsed": seconds - 0.5, "count/responses": responses - 8})
        records.append({"step": step, "time/train_elapsed": seconds, "count/responses": responses})
        records.append({"step": step, METRIC: accuracy, "count/gen_tokens": 10 * responses})
    return records


# ---------------------------------------------------------------------------------------------------------
# (1) time-to-target / responses-to-target


def test_first_crossing_interpolates_between_evaluations():
    curve = [(0.0, 0.2), (6.0, 0.45), (12.0, 0.55)]
    # 0.5 lies halfway from 0.45 to 0.55, so halfway from x=6 to x=12
    assert first_crossing(curve, 0.5) == pytest.approx(9.0)
    assert first_crossing(curve, 0.55) == 12.0  # reached exactly at the last point
    assert first_crossing(curve, 0.1) == 0.0  # the first point already reaches it
    assert first_crossing(curve, 0.56) is None  # not reached
    # non-monotone: the FIRST crossing counts, 0.2 → 0.6 between x=0 and x=5: 0.3/0.4 of the way = 3.75
    assert first_crossing([(0.0, 0.2), (5.0, 0.6), (10.0, 0.5)], 0.5) == pytest.approx(3.75)


def test_time_and_responses_to_target_against_the_baseline():
    runs = {
        # baseline: final 0.5 at 10 s / 200 responses, so the target is 0.5 and its whole run is 10 s / 200
        "base": {0: _records((0, 0, 0, 0.2), (10, 5, 100, 0.4), (20, 10, 200, 0.5))},
        # slower per step (12 s for 20 steps), but crosses 0.5 halfway between (6 s, 0.45) and (12 s, 0.55):
        # 9 s → saves 1 - 9/10 = 10%; in responses halfway from 100 to 200: 150 → saves 1 - 150/200 = 25%
        "fast": {0: _records((0, 0, 0, 0.2), (10, 6, 100, 0.45), (20, 12, 200, 0.55))},
        # peaks early: 0.2 → 0.6 between 0 and 4 s, 0.5 reached 0.3/0.4 of the way: 3 s (60 responses), then
        # falls back below the target; the first crossing counts: 1 - 3/10 = 70%, 1 - 60/200 = 70%
        "peak": {0: _records((0, 0, 0, 0.2), (10, 4, 80, 0.6), (20, 8, 160, 0.45))},
        # never reaches 0.5
        "slow": {0: _records((0, 0, 0, 0.2), (10, 5, 100, 0.3), (20, 10, 200, 0.4))},
    }
    result = compare(runs, baseline="base", metric=METRIC)
    assert result.target == 0.5
    base, fast, peak, slow = (result.recipes[k] for k in ("base", "fast", "peak", "slow"))
    # the baseline reaches its own final value, at its last evaluation: nothing saved
    assert base.time_to_target.value == 10.0 and base.time_to_target.reduction == 0.0
    assert base.responses_to_target.value == 200 and base.responses_to_target.reduction == 0.0
    assert fast.time_to_target.value == pytest.approx(9.0)
    assert fast.time_to_target.reduction == pytest.approx(0.10)
    assert fast.responses_to_target.value == pytest.approx(150.0)
    assert fast.responses_to_target.reduction == pytest.approx(0.25)
    assert peak.time_to_target.value == pytest.approx(3.0) and peak.time_to_target.reduction == pytest.approx(0.7)
    assert peak.responses_to_target.reduction == pytest.approx(0.7)
    assert peak.final.mean == 0.45 and peak.best.mean == 0.6
    assert not slow.time_to_target.reached and slow.time_to_target.reduction is None
    assert not slow.responses_to_target.reached
    assert fast.steps.mean == 20 and fast.responses.mean == 200 and fast.gen_tokens.mean == 2000
    assert fast.train_seconds.mean == 12.0


def test_a_method_needing_more_than_the_baselines_whole_run_has_a_negative_saving():
    runs = {
        "base": {0: _records((0, 0, 0, 0.2), (10, 10, 100, 0.5))},
        # reaches 0.5 only at 15 s: 1 - 15/10 = -50%
        "costly": {0: _records((0, 0, 0, 0.2), (10, 15, 100, 0.5))},
    }
    assert compare(runs, baseline="base", metric=METRIC).recipes["costly"].time_to_target.reduction == -0.5


def test_a_missing_metric_names_the_ones_the_run_logged():
    runs = {"base": {0: _records((0, 0, 0, 0.2), (10, 10, 100, 0.5))}}
    with pytest.raises(ValueError, match=r"'eval/avg@4'.*eval/avg@8"):
        compare(runs, baseline="base", metric="eval/avg@4")


# ---------------------------------------------------------------------------------------------------------
# (2) aggregation over seeds


def test_seeds_aggregate_to_mean_and_min_max_and_the_seed_mean_curve():
    runs = {
        "base": {
            0: _records((0, 0, 0, 0.2), (10, 4, 100, 0.4), (20, 8, 200, 0.6)),
            1: _records((0, 0, 0, 0.2), (10, 6, 100, 0.2), (20, 12, 200, 0.4)),
        }
    }
    base = compare(runs, baseline="base", metric=METRIC).recipes["base"]
    assert (base.final.mean, base.final.low, base.final.high) == pytest.approx((0.5, 0.4, 0.6))
    assert (base.best.mean, base.best.low, base.best.high) == pytest.approx((0.5, 0.4, 0.6))
    assert (base.train_seconds.mean, base.train_seconds.low, base.train_seconds.high) == (10.0, 8.0, 12.0)
    # seed-mean curve: (0, 0.2), (5, 0.3), (10, 0.5); the target is its last point, 0.5, reached at 10 s
    # (seed 1 alone never reaches 0.5: the reason time-to-target is read off the seed-mean curve)
    assert base.time_to_target.value == pytest.approx(10.0) and base.time_to_target.reduction == pytest.approx(0)
    assert [s.seed for s in base.seeds] == [0, 1] and [s.final for s in base.seeds] == [0.6, 0.4]


def test_mean_curve_aligns_seeds_by_step_and_ends_on_the_mean_final_point():
    # under a time budget seeds stop at different steps: A at 23, B at 18 (evaluating every 10 steps)
    a = [EvalPoint(0, 0, 0.2), EvalPoint(10, 5, 0.4), EvalPoint(20, 10, 0.5), EvalPoint(23, 11.5, 0.6)]
    b = [EvalPoint(0, 0, 0.2), EvalPoint(10, 5, 0.3), EvalPoint(18, 9, 0.5)]
    # common steps 0 and 10 (B never reached 20), then the mean final point ((11.5 + 9)/2, (0.6 + 0.5)/2)
    curve = mean_curve([a, b])
    assert [x for x, _ in curve] == pytest.approx([0, 5, 10.25])
    assert [y for _, y in curve] == pytest.approx([0.2, 0.35, 0.55])
    # 0.5 is 0.15/0.2 of the way from 0.35 to 0.55: 5 + 0.75 * 5.25 = 8.9375
    assert first_crossing(curve, 0.5) == pytest.approx(8.9375)
    # seeds that all end on the same step: no extra final point
    assert mean_curve([a[:3], a[:3]]) == [(0, 0.2), (5, 0.4), (10, 0.5)]


def test_nan_evaluations_are_dropped():
    records = _records((0, 0, 0, 0.2), (10, 5, 100, math.nan), (20, 10, 200, 0.5))
    result = compare({"base": {0: records}}, baseline="base", metric=METRIC).recipes["base"]
    assert result.best.mean == 0.5 and result.time_to_target.value == 10.0


def test_summarise_reads_finished_runs_only_and_lists_the_missing_ones(tmp_path):
    spec = BenchSpec([Recipe("a", None), Recipe("b", None)], tmp_path, seeds=[0, 1], metric=METRIC)
    (tmp_path / "bench.json").write_text(json.dumps(spec.to_dict()))
    finished = {
        ("a", 0): _records((0, 0, 0, 0.3), (10, 5, 100, 0.5)),
        ("a", 1): _records((0, 0, 0, 0.3), (10, 5, 100, 0.3)),
        ("b", 0): _records((0, 0, 0, 0.3), (10, 5, 100, 0.6)),  # b seed 1 never finished
    }
    for (label, seed), records in finished.items():
        run = spec.run_dir(label, seed)
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (run / "report.md").write_text("# done\n")
    (tmp_path / "dynamics.png").write_bytes(b"stale")
    summary = summarise(tmp_path)
    assert summary["missing"] == ["b seed 1"] and summary["target"] == pytest.approx(0.4)
    assert [s["seed"] for s in summary["recipes"]["b"]["seeds"]] == [0]
    # b: 0.3 → 0.6 over 0–5 s crosses 0.4 a third of the way: 5/3 s, saving 1 - (5/3)/5 = 2/3
    assert summary["recipes"]["b"]["time_to_target"]["reduction"] == pytest.approx(2 / 3)
    assert (tmp_path / "accuracy.png").read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / "dynamics.png").exists()  # nothing logged loss/entropy or loss/kl: no figure
    markdown = (tmp_path / "summary.md").read_text()
    assert "Not finished, left out: b seed 1." in markdown and "| a (baseline) | 2 | 40.0 (30.0–50.0) |" in markdown
    assert "Note:" not in markdown  # the baseline improved: time to target means something


# ---------------------------------------------------------------------------------------------------------
# spec, budget and run planning


def test_recipe_argument_round_trip_keeps_colons_inside_values():
    recipe = Recipe.parse("rloo=configs/grpo.yaml:algo.advantage=rloo:algo.loss_args={eps_low: 0.2}")
    assert recipe == Recipe("rloo", "configs/grpo.yaml", ("algo.advantage=rloo", "algo.loss_args={eps_low: 0.2}"))
    assert Recipe.parse(recipe.argument()) == recipe
    assert Recipe.parse("defaults=") == Recipe("defaults", None)
    with pytest.raises(ValueError, match="LABEL=CONFIG"):
        Recipe.parse("configs/grpo.yaml")
    with pytest.raises(ValueError, match="names a directory"):
        Recipe.parse("a/b=configs/grpo.yaml")


def test_budgets_become_trainer_limits(tmp_path):
    spec = BenchSpec([Recipe("grpo", str(GRPO_YAML))], tmp_path, overrides=["trainer.prompts_per_step=4"])
    recipe = spec.recipes[0]
    spec.budget = Budget.parse("responses=100")  # the trainer stops after the step that reaches 100 responses
    config = spec.run_config(recipe, 0)
    assert (config.trainer.max_responses, config.trainer.time_limit) == (100, 0.0)
    assert config.trainer.max_steps >= 10**9
    spec.budget = Budget.parse("steps=7")
    config = spec.run_config(recipe, 3)
    assert (config.trainer.max_steps, config.trainer.time_limit, config.run.seed) == (7, 0.0, 3)
    assert config.trainer.max_responses == 0
    assert config.run_dir == tmp_path / "runs" / "grpo" / "seed3"
    spec.budget = Budget.parse("time=90")
    config = spec.run_config(recipe, 0)
    assert config.trainer.time_limit == 90.0 and config.trainer.max_steps >= 10**9
    spec.overrides.append("trainer.lr_schedule=cosine")  # would never decay under an unbounded max_steps
    with pytest.raises(ValueError, match="lr_schedule=cosine"):
        spec.run_config(recipe, 0)
    with pytest.raises(ValueError, match="time=SECONDS"):
        Budget.parse("minutes=5")
    with pytest.raises(ValueError, match="whole number"):
        Budget.parse("steps=2.5")


def test_a_responses_budget_also_bounds_dynamic_sampling(tmp_path):
    dynamic = ("select.filters=[drop_zero_variance]", "select.dynamic_sampling=true")
    spec = BenchSpec([Recipe("dapo", str(GRPO_YAML), dynamic)], tmp_path, budget=Budget("responses", 100))
    assert spec.run_config(spec.recipes[0], 0).trainer.max_responses == 100


def test_the_bench_owns_seed_dir_and_budget_keys(tmp_path):
    with pytest.raises(ValueError, match="recipe 'a' set run.seed"):
        BenchSpec([Recipe("a", None, ("run.seed=3",))], tmp_path)
    with pytest.raises(ValueError, match="common overrides set trainer.max_steps"):
        BenchSpec([Recipe("a", None)], tmp_path, budget=Budget("steps", 5), overrides=["trainer.max_steps=9"])
    BenchSpec([Recipe("a", None)], tmp_path, overrides=["trainer.max_steps=9"])  # no budget: the recipe decides
    with pytest.raises(ValueError, match="baseline 'c'"):
        BenchSpec([Recipe("a", None), Recipe("b", None)], tmp_path, baseline="c")


def test_recipes_must_share_the_evaluation_protocol(tmp_path):
    spec = BenchSpec([Recipe("a", None), Recipe("b", None, ("eval.k=4",))], tmp_path, budget=Budget("steps", 1))
    with pytest.raises(ValueError, match=r"recipe 'b' evaluates differently.*eval\.k=4 \(baseline: 8\)"):
        plan_matrix(spec)


def test_training_files_may_differ_when_the_held_out_file_is_shared(tmp_path):
    # LIMR's subsets: each recipe trains on its own file, all are evaluated on one data.eval_path.
    def spec(*recipe_b, common=("data.source=file", "data.eval_path=held_out.jsonl")):
        recipes = [Recipe("a", None, ("data.path=full.jsonl",)), Recipe("b", None, recipe_b)]
        return BenchSpec(recipes, tmp_path, budget=Budget("steps", 1), overrides=list(common))

    plan_matrix(spec("data.path=subset.jsonl"))
    with pytest.raises(ValueError, match=r"data\.eval_path='other.jsonl'"):
        plan_matrix(spec("data.path=subset.jsonl", "data.eval_path=other.jsonl"))
    # Without an eval_path the held-out rows are set aside from data.path itself: the files must agree.
    with pytest.raises(ValueError, match=r"data\.path='subset.jsonl' \(baseline: 'full.jsonl'\)"):
        plan_matrix(spec("data.path=subset.jsonl", common=("data.source=file",)))


def test_run_action_skips_finished_resumes_checkpointed_starts_the_rest(tmp_path):
    run = tmp_path / "run"
    assert run_action(run) == "started"
    (run / "checkpoints" / "step_2").mkdir(parents=True)
    with pytest.warns(RuntimeWarning, match="no .committed marker"):
        assert run_action(run) == "started"  # an uncommitted checkpoint directory does not count
    (run / "checkpoints" / "step_2" / COMMIT_MARKER).touch()
    assert run_action(run) == "resumed"
    (run / "report.md").write_text("# done\n")
    assert run_action(run) == "skipped"


def test_the_training_subprocess_gets_the_config_the_bench_planned(tmp_path):
    from frugalrl.cli import build_parser as frugalrl_parser

    recipe = Recipe("rloo", str(GRPO_YAML), ("algo.advantage=rloo",))
    spec = BenchSpec([recipe], tmp_path, seeds=[1], budget=Budget("responses", 100), overrides=TINY)
    plan = plan_matrix(spec)[0]
    command = train_command(plan, resume=True)
    assert command[:4] == [sys.executable, "-m", "frugalrl.cli", "train"]
    args = frugalrl_parser().parse_args(command[3:])  # what `frugalrl train` does with it
    assert args.resume and load_config(args.config[0], args.config[1:]) == plan.config
    assert (plan.config.trainer.max_responses, plan.config.run.seed) == (100, 1)


def test_a_failed_training_process_stops_the_bench_with_an_actionable_error(tmp_path, monkeypatch):
    monkeypatch.setattr("frugalrl.bench.runner.train_command", lambda plan, resume: [sys.executable, "-c", "exit(3)"])
    spec = BenchSpec([Recipe("grpo", str(GRPO_YAML))], tmp_path, budget=Budget("steps", 1), overrides=TINY)
    with pytest.raises(BenchRunError, match=r"grpo seed 0 failed \(exit status 3.*resumes this one"):
        run_matrix(spec)


# ---------------------------------------------------------------------------------------------------------
# (3) a real tiny bench on the shipped testbed


TINY = [
    "model.path=testbed-arith",  # the first testbed (arithmetic): short answers keep these runs fast
    "data.source=arithmetic",
    "run.progress=false",
    "run.threads=1",  # the test machine's cores are shared: two threads would fight over them
    "data.train_size=50",
    "data.eval_size=8",
    "trainer.prompts_per_step=4",
    "rollout.group_size=2",
    "eval.num_problems=8",
    "eval.k=2",
]


def test_tiny_bench_writes_table_json_plots_and_skips_finished_runs_on_rerun(tmp_path):
    spec = BenchSpec(
        recipes=[Recipe("grpo", str(GRPO_YAML)), Recipe("rloo", str(GRPO_YAML), ("algo.advantage=rloo",))],
        out=tmp_path / "bench",
        seeds=[0],
        baseline="grpo",
        budget=Budget("steps", 2),
        overrides=TINY,
        # in this process: a fresh process per run costs seconds of imports (the subprocess command itself is
        # checked in test_the_training_subprocess_gets_the_config_the_bench_planned)
        isolation="inprocess",
    )
    out = run_bench(spec)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "eval/avg@2" and summary["baseline"] == "grpo"
    assert set(summary["recipes"]) == {"grpo", "rloo"} and summary["missing"] == []
    for row in summary["recipes"].values():
        assert row["steps"]["mean"] == 2 and row["responses"]["mean"] == 2 * 4 * 2
        assert 0 <= row["final"]["mean"] <= row["best"]["mean"] <= 1
        assert row["gen_tokens"]["mean"] > 0 and row["train_seconds"]["mean"] > 0
    grpo = summary["recipes"]["grpo"]
    assert summary["target"] == grpo["final"]["mean"]
    assert grpo["time_to_target"]["value"] is not None and grpo["time_to_target"]["reduction"] >= 0
    assert grpo["responses_to_target"]["value"] <= 16
    assert (out / "runs" / "rloo" / "seed0" / "config.yaml").read_text().count("advantage: rloo") == 1

    markdown = (out / "summary.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| recipe | seeds | final avg@2 | best avg@2 |")
    assert table[1].startswith("| grpo (baseline) | 1 | ") and table[2].startswith("| rloo | 1 | ")
    assert "](accuracy.png)" in markdown and "](dynamics.png)" in markdown
    for name in ("accuracy.png", "dynamics.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    # the command in summary.md rebuilds this very spec
    command = next(line for line in markdown.splitlines() if line.startswith("frugalrl bench"))
    assert spec_from_args(build_parser().parse_args(shlex.split(command)[2:])) == spec

    # a second invocation trains nothing: every run is finished
    files = [
        out / "runs" / label / "seed0" / name for label in ("grpo", "rloo") for name in ("metrics.jsonl", "report.md")
    ]
    mtimes = [path.stat().st_mtime_ns for path in files]
    assert [o.action for o in run_matrix(spec)] == ["skipped", "skipped"]
    run_bench(spec)
    assert [path.stat().st_mtime_ns for path in files] == mtimes
    # a run killed after its last checkpoint, before its report: resumed, not restarted
    (out / "runs" / "rloo" / "seed0" / "report.md").unlink()
    assert [o.action for o in run_matrix(spec)] == ["skipped", "resumed"]
    assert [r["step"] for r in read_metrics(out / "runs" / "rloo" / "seed0" / "metrics.jsonl")] == [0, 1, 2]
    # ... and refuses to reuse runs made under another budget
    spec.budget = Budget("steps", 3)
    with pytest.raises(ValueError, match=r"trainer\.max_steps: 2 in the run, 3 now"):
        run_matrix(spec)
