"""DOTS prediction math: attention over references, leave-one-out, calibration, the selection distribution,
and the trainable predictor on synthetic data with a known pass rate."""

import math

import numpy as np
import pytest
import torch

from frugalrl.selection.predictor import (
    Calibration,
    apply_calibration,
    attention_predict,
    choose_tau_att,
    fit_calibration,
    gumbel_ranking,
    loo_predict,
    prepare_embeddings,
    rankdata,
    selection_logits,
    spearman,
)
from frugalrl.selection.trained_predictor import PassRateTask, load_predictor, save_predictor, train_predictor


def test_attention_predict_hand_example():
    # H = 2, τ = 1/(√2·ln 3): the logit of reference j is ln 3·⟨e_j, e_q⟩ → weights 3:1 → b = 3/4·1 + 1/4·0
    ref = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([1.0, 0.0])
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pred = attention_predict(query, ref, labels, tau_att=1 / (math.sqrt(2) * math.log(3)))
    assert torch.allclose(pred, torch.tensor([0.75, 0.25]))


def test_attention_predict_chunks_agree_with_one_product():
    g = torch.Generator().manual_seed(1)
    query, ref, labels = torch.randn(37, 8, generator=g), torch.randn(9, 8, generator=g), torch.rand(9, generator=g)
    exclude = torch.randint(-1, 9, (37,), generator=g)
    whole = attention_predict(query, ref, labels, tau_att=0.3, exclude=exclude)
    chunked = attention_predict(query, ref, labels, tau_att=0.3, exclude=exclude, chunk_size=5)
    assert torch.allclose(whole, chunked)


def test_leave_one_out_ignores_the_prompts_own_label():
    # three references; the first attends only to the other two, so its own label cannot move its prediction
    ref = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]]), dim=1)
    labels = torch.tensor([0.9, 0.2, 0.4])
    changed = torch.tensor([0.0, 0.2, 0.4])
    a, b = loo_predict(ref, labels, tau_att=0.1), loo_predict(ref, changed, tau_att=0.1)
    assert a[0] == b[0]
    # the others did see the first label, and a single other reference gives its label exactly
    assert a[1] != b[1]
    two = loo_predict(ref[:2], labels[:2], tau_att=0.1)
    assert torch.allclose(two, torch.tensor([0.2, 0.9]))


def test_calibration_recovers_an_exact_line():
    pred = torch.tensor([0.1, 0.3, 0.5, 0.9])
    cal = fit_calibration(pred, 0.5 * pred + 0.1)
    assert cal.slope == pytest.approx(0.5) and cal.intercept == pytest.approx(0.1) and not cal.fallback


def test_calibration_falls_back_on_negative_slope_and_constant_predictions():
    pred = torch.tensor([0.1, 0.3, 0.5, 0.9])
    assert fit_calibration(pred, 1 - pred) == Calibration(1.0, 0.0, fallback=True)
    assert fit_calibration(torch.full((4,), 0.4), pred).fallback
    assert fit_calibration(pred[:1], pred[:1]).fallback


def test_apply_calibration_clips_to_the_unit_interval():
    # 2·p − 0.5 on [0, 0.1, 0.5, 0.9] = [−0.5, −0.3, 0.5, 1.3] → clipped [0, 0, 0.5, 1]
    out = apply_calibration(torch.tensor([0.0, 0.1, 0.5, 0.9]), Calibration(slope=2.0, intercept=-0.5))
    assert torch.allclose(out, torch.tensor([0.0, 0.0, 0.5, 1.0]))


def test_selection_logits_are_minus_distance_over_temperature():
    logits = selection_logits(torch.tensor([0.5, 0.4, 0.9]), alpha=0.5, tau_sel=0.1)
    assert torch.allclose(logits, torch.tensor([0.0, -1.0, -4.0], dtype=torch.float64))


def test_small_temperature_picks_exactly_the_prompts_closest_to_alpha():
    pred = torch.tensor([0.0, 0.31, 0.52, 0.97, 0.45, 0.62, 1.0, 0.5])
    rng = np.random.default_rng(0)
    for _ in range(20):
        # τ = 1e-6: neighbouring distances 0.02 apart differ by 2e4 in logit, far beyond any Gumbel draw
        ranking = gumbel_ranking(selection_logits(pred, alpha=0.5, tau_sel=1e-6), rng=rng)
        assert ranking[:4].tolist() == [7, 2, 4, 5]


def test_paper_temperature_does_not_underflow_far_from_alpha():
    # at τ = 1e-3 every weight is below e^-400: probabilities would underflow to 0 in float32, logits do not
    pred = torch.tensor([0.0, 0.1, 1.0, 0.95])
    ranking = gumbel_ranking(selection_logits(pred, alpha=0.5, tau_sel=1e-3), rng=np.random.default_rng(0))
    assert sorted(ranking.tolist()) == [0, 1, 2, 3] and ranking[:2].tolist() == [1, 3]


def test_large_temperature_is_near_uniform():
    pred = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    rng = np.random.default_rng(0)
    firsts = torch.stack(
        [gumbel_ranking(selection_logits(pred, alpha=0.5, tau_sel=1e4), rng=rng)[0] for _ in range(5000)]
    )
    share = torch.bincount(firsts, minlength=5).double() / 5000
    assert (share - 0.2).abs().max() < 0.03  # binomial std √(0.2·0.8/5000) ≈ 0.006


def test_gumbel_ranking_samples_without_replacement_with_the_right_probabilities():
    # weights 0.5, 0.3, 0.2: P(first = 0) = 0.5; P(0 then 1) = 0.5 · 0.3/0.5 = 0.3; P(1 then 0) = 0.3 · 0.5/0.7
    logits = torch.tensor([0.5, 0.3, 0.2]).log()
    rng = np.random.default_rng(0)
    draws = torch.stack([gumbel_ranking(logits, rng=rng) for _ in range(20000)])  # [20000, 3]
    assert all(sorted(row) == [0, 1, 2] for row in draws[:100].tolist())
    first01 = ((draws[:, 0] == 0) & (draws[:, 1] == 1)).double().mean()
    first10 = ((draws[:, 0] == 1) & (draws[:, 1] == 0)).double().mean()
    assert (draws[:, 0] == 0).double().mean() == pytest.approx(0.5, abs=0.015)
    assert first01 == pytest.approx(0.3, abs=0.015) and first10 == pytest.approx(0.3 * 0.5 / 0.7, abs=0.015)


def test_gumbel_ranking_puts_excluded_items_last():
    logits = torch.tensor([0.0, float("-inf"), 0.0, float("-inf")])
    ranking = gumbel_ranking(logits, rng=np.random.default_rng(0))
    assert set(ranking[:2].tolist()) == {0, 2} and set(ranking[2:].tolist()) == {1, 3}


def test_rankdata_averages_ties_and_spearman_known_values():
    assert rankdata(torch.tensor([0.5, 0.1, 0.5, 0.9])).tolist() == [2.5, 1.0, 2.5, 4.0]
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    # ranks [1..5] vs [2, 1, 4, 3, 5]: Σd² = 4 → ρ = 1 − 6·4/(5·24) = 0.8
    assert spearman(x, torch.tensor([2.0, 1.0, 4.0, 3.0, 5.0])) == pytest.approx(0.8)
    assert math.isnan(spearman(x, torch.ones(5)))


def test_prepare_embeddings_centres_and_normalises():
    raw = np.array([[10.0, 1.0], [10.0, -1.0]], dtype=np.float32)  # cosine ≈ 0.98 before centring
    out = prepare_embeddings(raw, center=True)
    assert torch.allclose(out, torch.tensor([[0.0, 1.0], [0.0, -1.0]]))
    assert torch.allclose(prepare_embeddings(raw, center=False).norm(dim=1), torch.ones(2))


def _synthetic(
    seed: int, *, label_seed: int | None = None, n: int = 2000, dim: int = 16, groups: int = 8, offset: float = 0.0
):
    """Random unit embeddings (from `seed`); true pass rate p = sigmoid(3√H·⟨e, w⟩ + offset) for a fixed unit w
    (√H·⟨e, w⟩ is about standard normal); labels = Binomial(G, p)/G (drawn from `label_seed`, default `seed`)."""
    emb = np.random.default_rng(seed).normal(size=(n, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    w = np.random.default_rng(1000).normal(size=dim)
    w /= np.linalg.norm(w)
    p = 1 / (1 + np.exp(-(3 * math.sqrt(dim) * emb @ w + offset)))
    labels = np.random.default_rng(seed if label_seed is None else label_seed).binomial(groups, p) / groups
    return torch.tensor(emb, dtype=torch.float32), torch.tensor(p), torch.tensor(labels, dtype=torch.float32)


def _split(n: int, k: int, seed: int):
    ref = torch.from_numpy(np.random.default_rng(seed).choice(n, k, replace=False))
    rest = torch.ones(n, dtype=torch.bool)
    rest[ref] = False
    return ref, rest


def test_attention_predictor_ranks_a_smooth_pass_rate_far_better_than_chance():
    # Spearman vs the true p with K = 64 references, seeds 0-7 while developing: 0.67-0.76 (chance: 0 ± 0.02)
    emb, p, labels = _synthetic(0)
    ref, rest = _split(len(emb), 64, seed=0)
    tau = choose_tau_att(emb[ref], labels[ref])
    pred = attention_predict(emb[rest], emb[ref], labels[ref], tau_att=tau)
    assert spearman(pred, p[rest]) > 0.5
    # the choice comes from the grid of cosine temperatures
    assert any(tau == pytest.approx(t / 4) for t in (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0))


def test_trained_predictor_beats_identity_attention_on_a_new_policy(tmp_path):
    # train on the first 1500 prompts under five "policies" (offsets); test on 500 unseen prompts under a sixth.
    # Spearman vs the true p, seeds 0-7 while developing: attention 0.66-0.79, trained 0.86-0.95 (always ahead
    # by 0.07 or more): the projections learn the one direction that matters.
    emb, _, _ = _synthetic(0)
    train_rows = torch.arange(1500)
    tasks = []
    for k, offset in enumerate((-2.0, -1.0, 0.0, 1.0, 2.0)):
        _, _, labels = _synthetic(0, label_seed=10 + k, offset=offset)
        tasks.append(PassRateTask(train_rows, labels[train_rows], torch.full((1500,), 8.0)))
    model, history = train_predictor(emb, tasks, epochs=15, hidden=32, proj_dim=16, seed=0)
    assert len(history) == 15 and all(math.isfinite(loss) for loss in history)

    _, p, labels = _synthetic(0, label_seed=99, offset=0.5)
    test_emb, test_p, test_labels = emb[1500:], p[1500:], labels[1500:]
    ref, rest = _split(500, 64, seed=0)
    tau = choose_tau_att(test_emb[ref], test_labels[ref])
    attention = attention_predict(test_emb[rest], test_emb[ref], test_labels[ref], tau_att=tau)
    with torch.no_grad():
        trained = model(test_emb[rest], test_emb[ref], test_labels[ref])
    assert spearman(trained, test_p[rest]) > spearman(attention, test_p[rest])

    path = tmp_path / "predictor.pt"
    save_predictor(model, path, embedder="hashed_ngrams", embedder_key="key-a")
    loaded = load_predictor(path, embedder_key="key-a")
    with torch.no_grad():
        assert torch.equal(loaded(test_emb[rest], test_emb[ref], test_labels[ref]), trained)
    with pytest.raises(ValueError, match="trained on embeddings 'key-a'"):
        load_predictor(path, embedder_key="key-b")


def test_train_predictor_explains_tasks_that_are_too_small():
    emb = torch.randn(10, 4)
    task = PassRateTask(torch.arange(10), torch.rand(10), torch.full((10,), 8.0))
    with pytest.raises(ValueError, match="no task has more than reference_size=64"):
        train_predictor(emb, [task], reference_size=64)


def test_train_predictor_command_learns_from_recorded_runs_and_feeds_the_selector(tmp_path, capsys):
    from frugalrl.cli import main
    from frugalrl.data.arithmetic import make_problems
    from frugalrl.selection import SelectorContext, selectors
    from frugalrl.tracking.stats import PromptStat, StatsStore

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {path: testbed}\ndata: {source: arithmetic, train_size: 300}\n")
    problems = make_problems(300, seed=0)  # what the run's data section rebuilds (data.seed defaults to 0)
    rng = np.random.default_rng(0)
    with StatsStore(run / "stats.sqlite") as stats:
        for step in range(1, 41):  # two windows of 20 steps, 100 prompts each step, harder levels worse
            rows = []
            for i in rng.choice(300, 100, replace=False).tolist():
                correct = int(rng.binomial(8, max(0.05, 1 - problems[i].level / 10)))
                rows.append(PromptStat(problems[i].id, samples=8, correct=correct, mean_reward=correct / 8, tokens=80))
            stats.record(step, rows)
    out = tmp_path / "predictor.pt"
    args = [
        "selection",
        "train-predictor",
        str(run),
        "--embedder",
        "hashed_ngrams",
        "--out",
        str(out),
        "--epochs",
        "3",
        "--reference-size",
        "16",
        "--hidden",
        "16",
        "--proj-dim",
        "8",
        "--cache-dir",
        str(tmp_path / "emb"),
    ]
    main(args)
    assert "trained on 2 windows of 1 runs (300 prompts)" in capsys.readouterr().out
    model = load_predictor(out)
    assert model.dims["hidden"] == 16 and model.center

    def rollout(batch_problems):  # every response correct: y = 1 for every reference prompt
        from test_dots import fake_batch

        return fake_batch(batch_problems, torch.ones(len(batch_problems) * 8, dtype=torch.bool))

    context = SelectorContext(rollout=rollout, group_size=8, cache_dir=tmp_path / "emb")
    selector = selectors.get("dots")(
        problems, seed=0, context=context, predictor="trained", predictor_path=str(out), reference_size=16
    )
    assert len(selector.select(0, 8)) == 8
    metrics = selector.metrics()
    # constant labels: calibration refused, Spearman undefined; the trained predictor has no τ_att
    assert metrics["select/calib_fallback"] == 1.0 and "select/tau_att" not in metrics
    assert "select/spearman" not in metrics
    with pytest.raises(ValueError, match="was trained on embeddings"):
        selectors.get("dots")(
            problems, seed=0, context=context, predictor="trained", predictor_path=str(out), embedder_args={"dim": 128}
        )
