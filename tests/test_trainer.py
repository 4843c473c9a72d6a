"""End-to-end: short GRPO runs on the shipped testbed base, checked for real effects."""

import json

import pytest
import torch

from frugalrl.cli import main
from frugalrl.config import ConfigError, load_config
from frugalrl.data import problems_of
from frugalrl.engine.checkpoint import MODEL_DIR
from frugalrl.engine.policy import load_policy
from frugalrl.testbed import ensure_base
from frugalrl.testbed.base_spec import named_base
from frugalrl.tracking import RunDir, StatsStore, read_metrics
from frugalrl.training.trainer import Trainer

TINY = [
    "model.path=testbed-arith",  # the first testbed: short answers keep these runs fast
    "data.source=arithmetic",
    "run.progress=false",
    "run.threads=2",
    "data.train_size=200",
    "data.eval_size=16",
    "trainer.prompts_per_step=8",
    "rollout.group_size=4",
    "trainer.lr=3e-4",
    "eval.num_problems=16",
    "eval.k=2",
]


def _tiny(tmp_path, name, *extra):
    return load_config(None, [*TINY, f"run.dir={tmp_path / name}", *extra])


def _weights(path):
    return {k: v.clone() for k, v in load_policy(path).model.state_dict().items()}


@pytest.mark.covers("replay kind", "none")
def test_tiny_run_trains_logs_reports_and_checkpoints(tmp_path):
    run = RunDir(Trainer(_tiny(tmp_path, "run", "trainer.max_steps=3", "eval.every=2")).run().path)
    records = read_metrics(run.metrics_path)
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    step = records[1]
    for key in (
        "rollout/reward_mean",
        "rollout/accuracy",
        "rollout/verify_timeouts",
        "rollout/no_answer_frac",
        "data/frac_all_correct",
        "data/frac_all_wrong",
        "loss/policy",
        "loss/entropy",
        "loss/grad_norm",
        "count/responses",
        "count/gen_tokens",
        "count/train_tokens",
        "time/generate",
        "time/update",
        "time/train_elapsed",
    ):
        assert key in step, key
    assert [r["count/responses"] for r in records] == [0, 32, 64, 96]
    assert {"eval/avg@2", "eval/pass@2", "eval/greedy"} <= set(records[0]) & set(records[2]) & set(records[3])
    assert "eval/avg@2" not in records[1]
    assert 0 < records[0]["eval/pass@2"] < 1  # the base solves some held-out problems, not all
    # the policy moved away from the base
    first_base = ensure_base(named_base("testbed-arith"))
    trained, base = _weights(run.checkpoint_dir(3) / MODEL_DIR), _weights(first_base)
    assert any(not torch.equal(trained[k], base[k]) for k in base)
    assert run.report_path.is_file() and "held-out" in run.report_path.read_text().lower()
    assert any(run.plots_dir.glob("*.png"))
    with StatsStore(run.stats_path) as stats:
        rates = stats.pass_rates()
    assert len(rates) == 24 and all(samples == 4 for samples, _ in rates.values())
    assert load_config(run.config_path) == _tiny(tmp_path, "run", "trainer.max_steps=3", "eval.every=2")


def test_resumed_run_reproduces_the_uninterrupted_run(tmp_path):
    extra = ["trainer.max_steps=4", "trainer.checkpoint_every=2", "eval.every=3", "trainer.lr=1e-3"]
    Trainer(_tiny(tmp_path, "whole", *extra)).run()
    Trainer(_tiny(tmp_path, "killed", *extra)).run()
    # a run killed after step 3 (its step-4 checkpoint never written), then resumed
    run = RunDir(tmp_path / "killed")
    for item in run.checkpoint_dir(4).iterdir():
        item.unlink() if item.is_file() else __import__("shutil").rmtree(item)
    run.checkpoint_dir(4).rmdir()
    Trainer(_tiny(tmp_path, "killed", *extra)).run(resume=True)

    def comparable(path):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_metrics(path)]

    whole, resumed = comparable(tmp_path / "whole/metrics.jsonl"), comparable(run.metrics_path)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3, 4]
    assert any(r.get("loss/grad_norm", 0) > 0 for r in whole)  # the runs really trained
    assert resumed == whole
    final_whole = _weights(tmp_path / "whole/checkpoints/step_4" / MODEL_DIR)
    final_resumed = _weights(run.checkpoint_dir(4) / MODEL_DIR)
    assert all(torch.equal(final_whole[k], final_resumed[k]) for k in final_whole)


def test_ppo_trains_policy_and_critic_and_resumes_exactly(tmp_path):
    ppo = [
        "algo.advantage=gae",
        "critic.kind=value_model",
        "rollout.group_size=1",
        "trainer.prompts_per_step=16",
        "algo.kl_coef=0.05",
        "algo.kl_mode=reward",
        "trainer.max_steps=3",
        "trainer.checkpoint_every=2",
        "eval.every=0",
        "eval.at_start=false",
    ]
    Trainer(_tiny(tmp_path, "whole", *ppo)).run()
    Trainer(_tiny(tmp_path, "killed", *ppo)).run()
    run = RunDir(tmp_path / "killed")
    __import__("shutil").rmtree(run.checkpoint_dir(3))  # killed after step 2's checkpoint
    Trainer(_tiny(tmp_path, "killed", *ppo)).run(resume=True)

    def comparable(path):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_metrics(path)]

    whole = comparable(tmp_path / "whole/metrics.jsonl")
    assert [r["count/responses"] for r in whole] == [16, 32, 48]  # G = 1
    assert all(r["critic/grad_norm"] > 0 and r["loss/grad_norm"] > 0 for r in whole)
    assert whole[-1]["critic/value_error"] < whole[0]["critic/value_error"]  # the critic learns the returns
    assert comparable(run.metrics_path) == whole  # the critic's weights and optimiser were restored


def test_resume_refuses_a_changed_config_but_allows_a_longer_run(tmp_path):
    Trainer(_tiny(tmp_path, "run", "trainer.max_steps=1", "eval.at_start=false")).run()
    with pytest.raises(ValueError, match="trainer.lr changed"):
        Trainer(_tiny(tmp_path, "run", "trainer.max_steps=2", "eval.at_start=false", "trainer.lr=1e-5")).run(
            resume=True
        )
    Trainer(_tiny(tmp_path, "run", "trainer.max_steps=2", "eval.at_start=false")).run(resume=True)
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2]


def test_evaluating_more_often_does_not_change_training(tmp_path):
    def training_metrics(name, every):
        Trainer(_tiny(tmp_path, name, "trainer.max_steps=3", f"eval.every={every}", "eval.at_start=false")).run()
        return [
            {k: v for k, v in r.items() if not k.startswith(("time/", "eval/"))}
            for r in read_metrics(tmp_path / name / "metrics.jsonl")
        ]

    assert training_metrics("often", 1) == training_metrics("rarely", 0)


def test_responses_budget_and_schedule(tmp_path):
    # 8 prompts × 4 = 32 responses a step. Evaluations every 48 responses fall after steps 2 (64 ≥ 48) and
    # 3 (96 ≥ 96); the budget of 100 is reached after step 4 (128), the last step, evaluated too.
    schedule = ["trainer.max_responses=100", "eval.every_responses=48", "eval.at_start=false"]
    records = read_metrics(
        Trainer(_tiny(tmp_path, "run", *schedule, "eval.kl_to_initial=true")).run().path / "metrics.jsonl"
    )
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r["count/responses"] for r in records] == [32, 64, 96, 128]
    assert ["eval/avg@2" in r for r in records] == [False, True, True, True]
    kl = [r["eval/kl_to_initial"] for r in records[1:]]  # the KL monitor rides along with each evaluation
    assert all(abs(v) < 1.0 for v in kl) and len(set(kl)) == 3


def test_starting_over_an_existing_run_requires_resume(tmp_path):
    config = _tiny(tmp_path, "run", "trainer.max_steps=1", "eval.at_start=false")
    Trainer(config).run()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(config).run()


def test_cli_train_then_eval_a_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "cli"
    main(["train", *TINY, f"run.dir={run_dir}", "trainer.max_steps=1", "eval.at_start=false"])
    capsys.readouterr()
    main(["eval", "--model", str(run_dir), "eval.k=2", "eval.num_problems=8", "--json"])
    metrics = json.loads(capsys.readouterr().out)
    assert {"eval/avg@2", "eval/pass@2", "eval/greedy"} <= set(metrics)


def test_cli_reports_config_errors_with_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "trainer.lrr=1"])
    assert exit_info.value.code == 2
    assert "valid keys in section 'trainer'" in capsys.readouterr().err


def test_cli_train_help_lists_config_keys(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "trainer.lr" in out and "AdamW learning rate" in out


def test_file_dataset_feeds_training_with_a_held_out_part(tmp_path):
    rows = [{"question": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(30)]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    config = load_config(None, ["data.source=file", f"data.path={path}", "data.eval_size=5"])
    train, held_out = problems_of(config.data)
    assert len(train) == 25 and len(held_out) == 5
    assert not {p.id for p in train} & {p.id for p in held_out}


def _killed_and_resumed_equals_whole(tmp_path, extra, *, kill_after):
    """Run `extra` whole, and killed after step `kill_after`'s checkpoint then resumed; returns the whole
    run's metrics after checking the resumed run logged exactly the same."""
    Trainer(_tiny(tmp_path, "whole", *extra)).run()
    Trainer(_tiny(tmp_path, "killed", *extra)).run()
    run = RunDir(tmp_path / "killed")
    for checkpoint in run.checkpoints_dir.iterdir():
        if int(checkpoint.name.split("_")[1]) > kill_after:
            __import__("shutil").rmtree(checkpoint)
    Trainer(_tiny(tmp_path, "killed", *extra)).run(resume=True)

    def comparable(path):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_metrics(path)]

    whole = comparable(tmp_path / "whole/metrics.jsonl")
    assert comparable(run.metrics_path) == whole
    return whole


@pytest.mark.covers("replay kind", "rr")
def test_rollout_replay_halves_generation_and_resumes_exactly(tmp_path):
    rr = [
        "replay.kind=rr",
        "algo.loss=rr_offpolicy",
        "replay.args.fresh_fraction=0.5",
        "trainer.max_steps=4",
        "trainer.checkpoint_every=2",
        "eval.every=0",
        "eval.at_start=false",
    ]
    records = _killed_and_resumed_equals_whole(tmp_path, rr, kill_after=2)
    # 8 prompts × 4: step 1 generates all 8 prompts (empty buffer); later steps 4 fresh + up to 4 replayed
    totals = [r["count/responses"] for r in records]
    generated = [b - a for a, b in zip([0, *totals[:-1]], totals, strict=True)]
    replayed = [r["replay/off_rows"] for r in records]
    assert generated[0] == 32 and replayed[0] == 0
    assert all(g < 32 for g in generated[2:]) and sum(replayed[2:]) > 0
    # replayed groups stand in for generated ones: drawn first, so every step trains on all B = 8 groups
    assert all(g + off == 32 for g, off in zip(generated, replayed, strict=True))
    assert any(r.get("loss/is_weight_max", 1.0) != 1.0 for r in records[2:])  # replayed rows are stale
    metrics = {"loss/clip_frac_fresh", "loss/clip_frac_replayed", "replay/weight_mean", "replay/weight_max"}
    assert all(metrics <= set(r) for r in records if r["replay/off_rows"])
    assert records[-1]["replay/buffer_bytes"] > 0 and "count/effective_steps" in records[-1]


@pytest.mark.covers("replay kind", "repo")
def test_repo_replays_past_responses_of_revisited_prompts_and_resumes_exactly(tmp_path):
    repo = [
        "replay.kind=repo",
        "data.train_size=16",  # 8 prompts a step: every prompt comes back every 2 steps
        "replay.args.capacity_per_prompt=8",
        "replay.args.min_cache=4",
        "replay.args.replay_k=2",
        "trainer.max_steps=4",
        "trainer.checkpoint_every=3",
        "eval.every=0",
        "eval.at_start=false",
    ]
    records = _killed_and_resumed_equals_whole(tmp_path, repo, kill_after=3)
    # steps 1-2 visit the 16 prompts once (4 responses stored each); from step 3 each prompt replays 2
    assert [r["replay/off_rows"] for r in records] == [0, 0, 16, 16]
    assert [r["count/responses"] for r in records] == [32, 64, 96, 128]  # replay generates nothing
    # kept_frac is a share of the generated rows: the 16 replayed rows trained on do not push it past 1
    assert [r["data/kept_frac"] for r in records] == [1.0] * 4
    # a new epoch reshuffles, so step 3's prompts were stored at step 1 or 2: 1 or 2 steps stale
    assert 1.0 <= records[2]["replay/staleness_mean"] <= 2.0 and records[2]["replay/staleness_max"] <= 2.0
    assert records[-1]["count/effective_steps"] >= 1


def test_dots_counts_its_reference_rollouts_logs_select_metrics_and_resumes_exactly(tmp_path):
    dots = [
        "select.selector=dots",
        "select.selector_args={mu: 2, reference_size: 8, embedder: hashed_ngrams}",
        "trainer.max_steps=4",
        "trainer.checkpoint_every=2",
        "eval.every=0",
        "eval.at_start=false",
    ]
    records = _killed_and_resumed_equals_whole(tmp_path, dots, kill_after=2)
    # a selection round every 2 steps rolls out 8 reference prompts × 4 on top of the step's 8 × 4
    assert [r["count/responses"] for r in records] == [64, 96, 160, 192]
    # (select/spearman is left out of a round whose held-out references share one label)
    assert {"select/mae", "select/calib_slope", "select/reference_responses"} <= set(records[0])
    assert records[0]["select/reference_responses"] == 32


def test_a_run_saved_before_keys_were_renamed_resumes(tmp_path):
    # a run directory from before `trainer.ppo_epochs` became `trainer.epochs` and replay's arguments moved to
    # replay.args: its saved config names the old keys (every kind's replay arguments, flat)
    extra = ["trainer.max_steps=1", "eval.at_start=false", "replay.kind=repo", "replay.args.min_cache=2"]
    Trainer(_tiny(tmp_path, "old", *extra)).run()
    saved = tmp_path / "old" / "config.yaml"
    text = saved.read_text()
    old_replay = (
        "replay:\n  kind: repo\n  capacity: 128\n  fresh_fraction: 0.5\n  capacity_per_prompt: 16\n  replay_k: 8\n"
        "  min_cache: 2\n  strategy: highest_k\n  advantage_mode: split\n  off_weight: 1.0\n"
    )
    new_replay = text[text.index("replay:\n") : text.index("trainer:\n")]
    epochs, ppo_epochs = "  prompts_per_step: 8\n  epochs: 1\n", "  prompts_per_step: 8\n  ppo_epochs: 1\n"
    text = text.replace(new_replay, old_replay).replace(epochs, ppo_epochs)
    saved.write_text(text)
    with pytest.raises(ConfigError, match="was renamed: set "):
        load_config(saved)  # as a recipe, an old key is an error naming the new one
    args = load_config(saved, saved=True).replay.args  # RePO's six arguments; rollout replay's two left out
    assert set(args) == {"capacity_per_prompt", "replay_k", "min_cache", "strategy", "advantage_mode", "off_weight"}
    assert args["min_cache"] == 2
    Trainer(_tiny(tmp_path, "old", *extra[1:], "trainer.max_steps=2")).run(resume=True)
    assert [r["step"] for r in read_metrics(tmp_path / "old" / "metrics.jsonl")] == [1, 2]
