"""Run report and plot helpers on synthetic metrics."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from frugalrl.tracking import (
    MetricsLog,
    RunDir,
    eval_keys,
    plot_bands,
    plot_curves,
    save_figure,
    seed_band,
    series,
    summarize,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _train_metrics(step):
    return {
        "rollout/reward_mean": 0.1 + 0.05 * step,  # 0.15 at step 1 ... 0.6 at step 10
        "count/responses": 64 * step,
        "count/gen_tokens": 1000 * step,
        "time/train_elapsed": 2.5 * step,
        "data/frac_all_correct": 0.02 * step,
        "data/frac_all_wrong": 0.5 - 0.03 * step,
    }


def _synthetic_run(path, *, with_eval=True):
    run = RunDir(path)
    with MetricsLog(run.metrics_path) as log:
        if with_eval:
            log.log(0, {"eval/avg@4": 0.2, "eval/greedy": 0.25, "eval/level_1/avg@4": 0.3})  # no counters yet
        for step in range(1, 11):
            metrics = _train_metrics(step)
            if with_eval and step == 5:
                metrics |= {"eval/avg@4": 0.5, "eval/greedy": 0.4}
            log.log(step, metrics)
        if with_eval:
            log.log(10, {"eval/avg@4": 0.45, "eval/greedy": 0.55, "eval/level_1/avg@4": 0.7})  # logged apart
    return run


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 1000, path


def test_report_summarises_the_run_and_embeds_valid_plots(tmp_path):
    run = _synthetic_run(tmp_path / "demo")
    report = write_report(run)
    assert report == run.report_path
    text = report.read_text()
    assert text.startswith("# Run report: demo\n")
    assert "| Steps | 10 |" in text
    assert "| Responses generated | 640 |" in text  # 64 per step x 10 steps
    assert "| Tokens generated | 10,000 |" in text
    assert "| Training wall time (excl. evaluation) | 25.0 s (0:00:25) |" in text  # 2.5 s x 10
    assert "| Training reward (first → last) | 0.15 → 0.6 |" in text
    # eval/avg@4: 0.2 at step 0, 0.5 at step 5, 0.45 at step 10 -> best is the middle one
    assert "| `eval/avg@4` | 0.2 (step 0) | 0.45 (step 10) | 0.5 (step 5) |" in text
    assert "| `eval/greedy` | 0.25 (step 0) | 0.55 (step 10) | 0.55 (step 10) |" in text
    assert "| `eval/level_1/avg@4` | 0.3 (step 0) | 0.7 (step 10) | 0.7 (step 10) |" in text
    for name in ("reward", "eval", "eval_subsets", "data"):
        assert f"](plots/{name}.png)" in text
        _assert_png(run.plots_dir / f"{name}.png")


def test_report_without_evaluation(tmp_path):
    run = _synthetic_run(tmp_path / "no_eval", with_eval=False)
    text = write_report(run, title="Baseline").read_text()
    assert text.startswith("# Baseline\n")
    assert "No held-out evaluation was recorded in this run." in text
    assert "plots/eval" not in text and not (run.plots_dir / "eval.png").exists()
    _assert_png(run.plots_dir / "reward.png")


def test_report_with_only_steps_and_reward(tmp_path):
    run = RunDir(tmp_path / "minimal")
    with MetricsLog(run.metrics_path) as log:
        log.log(1, {"rollout/reward_mean": float("nan")})
        log.log(2, {"rollout/reward_mean": 0.5})
    text = write_report(run).read_text()
    assert "| Responses generated | — |" in text and "| Training reward (first → last) | nan → 0.5 |" in text
    assert "plots/data.png" not in text
    _assert_png(run.plots_dir / "reward.png")


def test_report_on_an_empty_run(tmp_path):
    run = RunDir(tmp_path / "empty")
    run.metrics_path.touch()
    assert "No metrics were recorded" in write_report(run).read_text()
    with pytest.raises(FileNotFoundError, match="metrics.jsonl does not exist"):
        write_report(RunDir(tmp_path / "never_started"))


def test_eval_keys_select_held_out_accuracy_only():
    records = [
        {"step": 0, "eval/avg@8": 0.1, "eval/level_3/pass@4": 0.2, "eval/greedy": 0.3, "eval/level_3/greedy": 0.4},
        {"step": 1, "eval/time_s": 4.0, "eval/greedy_len": 12.0, "rollout/pass@1": 0.5, "eval/avg@k": 0.1},
        {"step": 2, "eval/myavg@8": 0.1, "eval/level_3/nongreedy": 0.1},
    ]
    assert eval_keys(records) == ["eval/avg@8", "eval/greedy", "eval/level_3/greedy", "eval/level_3/pass@4"]


def test_series_carries_cumulative_x_forward():
    records = [
        {"step": 0, "eval/greedy": 0.2},  # before any response: x = 0
        {"step": 1, "count/responses": 64, "rollout/reward_mean": 0.1},
        {"step": 2, "eval/greedy": 0.3},  # counter not logged this step: still 64
        {"step": 3, "count/responses": 192, "eval/greedy": 0.4},
    ]
    assert series(records, "eval/greedy", "count/responses") == [(0.0, 0.2), (64.0, 0.3), (192.0, 0.4)]
    assert series(records, "eval/greedy") == [(0.0, 0.2), (2.0, 0.3), (3.0, 0.4)]
    assert series(records, "loss/kl") == []


def test_summarize_best_ignores_nan():
    records = [{"step": 1, "eval/greedy": float("nan")}, {"step": 2, "eval/greedy": 0.3}]
    summary = summarize(records).evals["eval/greedy"]
    assert summary.best == (2, 0.3) and summary.first[0] == 1


def test_seed_band_on_shared_x_aggregates_pointwise():
    x, mean, low, high = seed_band([[(0, 1.0), (1, 2.0)], [(0, 3.0), (1, 4.0)]])
    np.testing.assert_allclose(x, [0, 1])
    np.testing.assert_allclose(mean, [2.0, 3.0])
    np.testing.assert_allclose(low, [1.0, 2.0])
    np.testing.assert_allclose(high, [3.0, 4.0])


def test_seed_band_on_different_x_interpolates_over_the_common_range():
    a = [(0, 0.0), (10, 10.0)]
    b = [(0, 0.0), (5, 10.0), (20, 10.0)]
    # common range [0, 10], 3 points: a = [0, 5, 10], b = [0, 10, 10]
    x, mean, low, high = seed_band([a, b], num=3)
    np.testing.assert_allclose(x, [0, 5, 10])
    np.testing.assert_allclose(mean, [0, 7.5, 10])
    np.testing.assert_allclose(low, [0, 5, 10])
    np.testing.assert_allclose(high, [0, 10, 10])
    _, mean, low, high = seed_band([a, b], num=3, band="std")
    np.testing.assert_allclose(high - mean, [0, 2.5, 0])  # population std of (5, 10) is 2.5
    with pytest.raises(ValueError, match="share no x range"):
        seed_band([[(0, 1.0), (1, 1.0)], [(2, 1.0), (3, 1.0)]])


def test_comparison_plot_reuses_the_helpers(tmp_path):
    runs = {
        "grpo": [[(s, 0.1 * s + 0.01 * seed) for s in range(5)] for seed in range(3)],
        "grpo+dots": [[(s, 0.2 * s) for s in range(5)] for _ in range(3)],
    }
    fig = Figure(figsize=(8, 3))
    left, right = fig.subplots(1, 2)
    plot_bands(left, runs, ylabel="accuracy", title="3 seeds")
    plot_curves(right, {label: seeds[0] for label, seeds in runs.items()}, title="seed 0")
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["grpo (n=3)", "grpo+dots (n=3)"]
    _assert_png(save_figure(fig, tmp_path / "compare.png"))
