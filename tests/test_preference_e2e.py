"""End to end: iterative DPO, LoRR and offline pairs on the shipped testbed base, checked for real effects."""

import json
import math
import shutil

import pytest
import torch

from frugalrl.config import ConfigError, load_config
from frugalrl.data.files import DatasetFormatError
from frugalrl.data.preference_pairs import arithmetic_pairs
from frugalrl.engine.checkpoint import MODEL_DIR
from frugalrl.engine.policy import load_policy
from frugalrl.testbed import ensure_base
from frugalrl.testbed.base_spec import named_base
from frugalrl.tracking import RunDir, read_metrics
from frugalrl.training.preference import PreferenceTrainer
from frugalrl.training.trainer import train

TINY = [
    "model.path=testbed-arith",  # the first testbed (arithmetic): short answers keep these runs fast
    "data.source=arithmetic",
    "run.progress=false",
    "run.threads=1",  # one thread: on a busy machine two threads wait on each other
    "data.train_size=200",
    "data.eval_size=8",
    "data.levels=[1,2]",  # easy levels: most groups hold right and wrong answers, so pairs exist
    "trainer.prompts_per_step=6",
    "rollout.group_size=4",
    "rollout.max_new_tokens=24",
    "trainer.lr=1e-3",
    "eval.num_problems=8",
    "eval.k=1",
    "eval.greedy=false",
    "eval.at_start=false",
    "eval.every=0",
    "algo.kind=preference",
    "preference.loss_args={label_smoothing: 0.0}",
]
LORR = ["lorr.enabled=true", "lorr.reset_every=2", "lorr.replay_number=2"]


def _tiny(tmp_path, name, *extra):
    return load_config(None, [*TINY, f"run.dir={tmp_path / name}", *extra])


def _weights(path):
    return {k: v.clone() for k, v in load_policy(path).model.state_dict().items()}


def test_reference_is_the_policy_at_the_start_of_each_iteration(tmp_path):
    # One pass of one optimiser step per iteration: the loss is computed before the step, when π_θ = π_ref
    # if π_ref is refreshed each iteration, so every step's DPO loss is log 2 and its margin 0.
    one_step = ["trainer.max_steps=2", "preference.epochs=1"]
    run = train(_tiny(tmp_path, "iteration", *one_step))
    records = [r for r in read_metrics(run / "metrics.jsonl") if r["step"] > 0]
    assert all(r["pref/pairs"] > 0 for r in records)
    assert [r["pref/loss"] for r in records] == pytest.approx([math.log(2)] * 2, abs=1e-5)
    assert [r["pref/margin"] for r in records] == pytest.approx([0.0] * 2, abs=1e-5)
    # against the initial policy the later iterations start away from log 2
    run = train(_tiny(tmp_path, "initial", *one_step, "preference.reference=initial"))
    records = [r for r in read_metrics(run / "metrics.jsonl") if r["step"] > 0]
    assert records[0]["pref/loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert all(abs(r["pref/margin"]) > 1e-4 for r in records[1:])


def test_lorr_run_logs_resets_and_resumes_after_a_kill_to_the_uninterrupted_run(tmp_path):
    # resets after steps 2 and 4: the one at step 4, after the resume, needs W_0 and the first batch from
    # the step-2 checkpoint
    extra = [*LORR, "trainer.max_steps=4", "trainer.checkpoint_every=2", "eval.every=3"]
    whole = RunDir(train(_tiny(tmp_path, "whole", *extra)))
    records = read_metrics(whole.metrics_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for key in ("pref/loss", "pref/sft_loss", "pref/pref_loss", "pref/reward_chosen", "pref/reward_rejected",
                "pref/margin", "pref/accuracy", "pref/pairs", "pref/skipped_groups", "pref/lambda",
                "rollout/verify_timeouts", "rollout/no_answer_frac", "count/responses", "count/train_tokens",
                "time/update", "eval/avg@1"):  # fmt: skip
        assert key in records[2], key
    # λ over passes 1, 2 of L = 2 with cap 0.5: 0.25, 0.5 → mean 0.375
    assert records[0]["pref/lambda"] == pytest.approx(0.375)
    assert [r.get("pref/reset", 0.0) for r in records] == [0.0, 1.0, 0.0, 1.0]
    assert [r["pref/resets"] for r in records] == [0.0, 1.0, 1.0, 2.0]
    assert 0 < records[1]["pref/reset_change"] < 1 and "pref/reuse_loss" in records[1]
    assert [r["count/responses"] for r in records] == [24, 48, 72, 96]
    assert all(r["pref/pairs"] + r["pref/skipped_groups"] == 6 for r in records)
    first_base = ensure_base(named_base("testbed-arith"))
    trained, base = _weights(whole.checkpoint_dir(4) / MODEL_DIR), _weights(first_base)
    assert any(not torch.equal(trained[k], base[k]) for k in base)
    assert whole.report_path.is_file()

    train(_tiny(tmp_path, "killed", *extra))
    run = RunDir(tmp_path / "killed")
    shutil.rmtree(run.checkpoint_dir(4))  # killed after step 3, before its step-4 checkpoint
    train(_tiny(tmp_path, "killed", *extra), resume=True)

    def comparable(path):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_metrics(path)]

    resumed = comparable(run.metrics_path)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert resumed == comparable(whole.metrics_path)
    final_resumed = _weights(run.checkpoint_dir(4) / MODEL_DIR)
    assert all(torch.equal(trained[k], final_resumed[k]) for k in trained)


def test_online_steps_log_what_the_verifier_saw(tmp_path):
    # The testbed answers in \boxed{}, never as `#### 42`: read with the gsm8k extractor no response has
    # an answer, so every one counts (no_answer_frac 1.0, warned once) and none reaches the verifier (0
    # timeouts); every reward is 0, so no group yields a pair.
    trainer = PreferenceTrainer(_tiny(tmp_path, "gsm8k", "trainer.max_steps=1", "algo.answer_extraction=gsm8k"))
    with pytest.warns(RuntimeWarning, match="no answer that algo.answer_extraction=gsm8k can read"):
        _, metrics = trainer.step(1)
    assert metrics["rollout/no_answer_frac"] == 1.0 and metrics["rollout/verify_timeouts"] == 0.0
    assert metrics["pref/pairs"] == 0.0 and metrics["pref/skipped_groups"] == 6.0


def _pairs_file(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_offline_pairs_train_with_lorr(tmp_path):
    data = _pairs_file(tmp_path / "pairs.jsonl", arithmetic_pairs(9, seed=0, levels=[1, 2]))
    offline = [f"preference.offline_path={data}", "preference.reference=initial", *LORR, "trainer.max_steps=3"]
    trainer = PreferenceTrainer(_tiny(tmp_path, "offline", *offline))
    run = RunDir(trainer.run().path)
    records = read_metrics(run.metrics_path)
    assert [r["pref/pairs"] for r in records] == [6, 6, 6]
    assert [r["count/responses"] for r in records] == [0, 0, 0]  # nothing generated
    assert records[1].get("pref/reset") == 1.0 and all(math.isfinite(r["pref/loss"]) for r in records)
    # against the initial policy the first pass starts at log 2; by the last step the true answers have
    # gained on the wrong ones
    assert records[-1]["pref/pref_loss"] < math.log(2) and records[-1]["pref/margin"] > 0


def test_bad_preference_input_gives_one_line_errors_naming_the_field(tmp_path):
    data = _pairs_file(tmp_path / "no_rejected.jsonl", [{"prompt": "1+1", "chosen": "2", "answer": "3"}])
    with pytest.raises(DatasetFormatError) as err:
        PreferenceTrainer(_tiny(tmp_path, "bad", f"preference.offline_path={data}", "trainer.max_steps=1"))
    message = str(err.value)
    assert "'rejected'" in message and "preference.rejected_column" in message and "\n" not in message
    for override, key in (
        ("lorr.replay_number=0", "lorr.replay_number"),
        ("lorr.alpha=1.5", "lorr.alpha"),
        ("lorr.alpha=-0.1", "lorr.alpha"),
        ("preference.loss=hybrid", "preference.loss"),
        ("preference.loss_args={tau: 0.1}", "preference.loss_args"),
        ("lorr.reset_pattern=(", "lorr.reset_pattern"),
        ("preference.rejected=x", "preference.rejected"),  # unknown key: lists the section's keys
    ):
        with pytest.raises(ConfigError) as err:
            _tiny(tmp_path, "bad", override)
        assert key in str(err.value) and "\n" not in str(err.value), override
    with pytest.raises(ConfigError, match="algo.kind=preference"):
        load_config(None, ["lorr.enabled=true"])
    with pytest.raises(ValueError, match="lorr.reset_pattern"):
        PreferenceTrainer(_tiny(tmp_path, "bad", "lorr.enabled=true", "lorr.reset_pattern=no_such_weight"))
