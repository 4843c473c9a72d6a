"""benchmarks/vs_trl.py without training: arguments, the recipe → GRPOConfig mapping, and the summary of
hand-made worker results. (The benchmark itself needs TRL and minutes of CPU; it is not part of CI.)"""

import math
import sys
from pathlib import Path

import pytest

import benchmark_scripts

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vs_trl():
    return benchmark_scripts.load("vs_trl")


def _args(vs_trl, *argv):
    args = vs_trl.build_parser().parse_args(list(argv))
    vs_trl.check_args(args)
    return args


def test_defaults_and_worker_command_round_trip(vs_trl, tmp_path):
    args = _args(vs_trl)
    assert (args.steps, args.warmup, args.rounds, args.threads, args.seed, args.last) == (10, 1, 2, 2, 0, 3)
    assert args.config == ROOT / "configs" / "grpo.yaml" and args.worker is None

    args = _args(vs_trl, "--steps", "4", "--threads", "1", "--seed", "3", "--set", "trainer.lr=2e-4")
    cmd = vs_trl.worker_command(args, "trl", 2, tmp_path / "r.json")
    assert cmd[0] == sys.executable and cmd[1] == str(ROOT / "benchmarks" / "vs_trl.py")
    worker = _args(vs_trl, *cmd[2:])
    assert worker.worker == "trl" and worker.round == 2 and worker.result == tmp_path / "r.json"
    assert (worker.steps, worker.warmup, worker.threads, worker.seed) == (4, 1, 1, 3)
    assert worker.overrides == ["trainer.lr=2e-4"]


def test_last_is_capped_at_steps_and_bad_counts_are_refused(vs_trl):
    assert _args(vs_trl, "--steps", "2").last == 2
    with pytest.raises(SystemExit):
        _args(vs_trl, "--steps", "0")
    with pytest.raises(SystemExit):
        _args(vs_trl, "--worker", "frugalrl")  # no --result


def test_default_recipe_maps_onto_trl(vs_trl):
    cfg = vs_trl.load_bench_config(_args(vs_trl, "--threads", "1"))
    assert cfg.run.threads == 1 and cfg.run.device == "cpu"
    s = vs_trl.trl_settings(cfg)
    # 32 prompts × 8 = 256 completions per optimiser step, in the recipe's micro-batches of 128
    assert s["per_device_train_batch_size"] * s["gradient_accumulation_steps"] == 256
    assert s["per_device_train_batch_size"] == cfg.trainer.micro_batch_size == 128
    assert s["steps_per_generation"] == s["gradient_accumulation_steps"] and s["num_iterations"] == 1
    assert s["num_generations"] == 8 and s["max_completion_length"] == 112
    assert (s["temperature"], s["top_p"], s["top_k"]) == (1.0, 1.0, 0)
    assert s["loss_type"] == "dapo" and s["scale_rewards"] == "group" and s["beta"] == 0.0
    assert (s["epsilon"], s["epsilon_high"]) == (0.2, 0.2)
    assert (s["learning_rate"], s["adam_beta1"], s["adam_beta2"], s["weight_decay"]) == (5e-5, 0.9, 0.99, 0.0)
    assert s["lr_scheduler_type"] == "constant" and s["max_grad_norm"] == 1.0
    assert s["gradient_checkpointing"] is False and s["use_cpu"] is True and s["bf16"] is False
    assert s["shuffle_dataset"] is False and s["optim"] == "adamw_torch"


def test_recipe_variants(vs_trl):
    def settings(*overrides):
        return vs_trl.trl_settings(vs_trl.load_bench_config(_args(vs_trl, *[f"--set={o}" for o in overrides])))

    assert settings("algo.agg=seq_mean_token_mean")["loss_type"] == "grpo"
    assert settings("algo.loss_args={eps_high: 0.28}")["epsilon_high"] == 0.28
    assert settings("trainer.micro_batch_size=0")["gradient_accumulation_steps"] == 1
    for bad, named in [
        ("algo.kl_coef=0.1", "algo.kl_coef=0"),
        ("trainer.epochs=2", "epochs=1"),
        (("replay.kind=rr", "algo.loss=rr_offpolicy"), "replay.kind=none"),
        ("trainer.lr_schedule=cosine", "lr_schedule=constant"),
        ("trainer.micro_batch_size=100", "micro_batch_size (100)"),
    ]:
        with pytest.raises(ValueError, match="cannot mirror") as err:
            settings(*([bad] if isinstance(bad, str) else bad))
        assert named in str(err.value)


def _run(framework, round_, seconds, rewards, *, tokens=2500, warmup=1):
    steps = []
    for i, reward in enumerate(rewards):
        step = {
            "step": i + 1,
            "timed": i + 1 > warmup,
            "seconds": seconds if i + 1 > warmup else 100.0,  # the warm-up never counts
            "generate_seconds": seconds / 2,
            "generate_calls": 1,
            "gen_tokens": tokens,
            "train_tokens": tokens,
            "responses": 256,
            "max_response_tokens": 40,
            "reward_mean": reward,
        }
        if framework == "trl":
            step["loop_seconds"] = seconds * 1.25
        steps.append(step)
    return {
        "framework": framework,
        "round": round_,
        "warmup": warmup,
        "threads": 2,
        "torch_threads": 2,
        "seed": 0,
        "setup_seconds": 1.0,
        "param_change": 0.1,
        "total_seconds": 10.0,
        "steps": steps,
    }


def test_summary_rates_ratios_and_rewards(vs_trl):
    results = [
        _run("frugalrl", 1, 1.0, [0.1, 0.2, 0.3, 0.4]),
        _run("trl", 1, 2.0, [0.1, 0.2, 0.3, 0.5]),
        _run("frugalrl", 2, 1.0, [0.1, 0.2, 0.3, 0.6]),
        _run("trl", 2, 3.0, [0.1, 0.2, 0.3, 0.3]),
    ]
    summary = vs_trl.summarise(results, last=2)
    fr, trl = summary["frameworks"]["frugalrl"], summary["frameworks"]["trl"]
    assert fr["timed_steps"] == trl["timed_steps"] == 6
    assert fr["steps_per_s"] == pytest.approx(1.0)
    assert trl["steps_per_s"] == pytest.approx(6 / 15)  # pooled: 3 steps of 2 s and 3 of 3 s
    assert trl["steps_per_s_by_round"] == pytest.approx([0.5, 1 / 3])
    assert trl["loop_steps_per_s"] == pytest.approx(6 / (15 * 1.25))
    assert fr["gen_tokens_per_s"] == pytest.approx(2500) and trl["train_tokens_per_s"] == pytest.approx(1000)
    assert fr["mean_response_tokens"] == pytest.approx(2500 / 256)
    assert fr["reward_timed"] == pytest.approx((0.2 + 0.3 + 0.4 + 0.2 + 0.3 + 0.6) / 6)
    assert fr["reward_last"] == pytest.approx((0.3 + 0.4 + 0.3 + 0.6) / 4)
    assert trl["reward_by_step"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert summary["ratios"]["steps_per_s"] == pytest.approx(2.5)
    assert summary["ratios"]["gen_tokens_per_s"] == pytest.approx(2.5)
    assert summary["meets_target"] is True

    slow = vs_trl.summarise([_run("frugalrl", 1, 1.5, [0, 0, 0]), _run("trl", 1, 2.0, [0, 0, 0])], last=1)
    assert slow["ratios"]["steps_per_s"] == pytest.approx(4 / 3) and slow["meets_target"] is False
    with pytest.raises(ValueError, match="no trl runs"):
        vs_trl.summarise([_run("frugalrl", 1, 1.0, [0, 0])], last=1)


def test_markdown_report(vs_trl):
    args = _args(vs_trl, "--steps", "3", "--rounds", "1")
    settings = vs_trl.trl_settings(vs_trl.load_bench_config(args))
    summary = vs_trl.summarise([_run("frugalrl", 1, 1.0, [0.1] * 4), _run("trl", 1, 2.5, [0.1] * 4)], last=3)
    summary["meta"] = vs_trl.run_metadata(args, ["--steps", "3", "--rounds", "1"], settings)
    text = vs_trl.render_markdown(summary)
    assert "python benchmarks/vs_trl.py --steps 3 --rounds 1" in text
    assert "| steps/s | 1 | 0.4 | **2.5×** |" in text
    assert "**met**" in text and "mean reward, last 3 steps" in text
    assert "`loss_type='dapo'`" in text and "trl" in summary["meta"]["versions"]
    assert not math.isnan(summary["ratios"]["steps_per_s_vs_trl_loop"])
