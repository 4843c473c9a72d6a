"""How well does the DOTS predictor know the testbed policy's pass rates, per embedder?

    python benchmarks/dots_predictor.py --problems 1024 --draws 40

Rolls out the testbed base policy (configs/grpo.yaml: G = 8, T = 1) on `--problems` random training
problems, then, for `--draws` random reference sets of K = 64 of them, predicts the others' pass rates
with the dots selector's pipeline (attention with τ_att chosen by leave-one-out, LOO-fitted calibration)
and reports per embedder: Spearman correlation with the measured pass rates (which carry binomial noise,
so even a perfect predictor stays below 1), mean absolute error, and the share of informative groups
(0 < pass rate < 1) among the 64 prompts the selection would serve, against the share under uniform
sampling. Writes summary.md and summary.json to `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from frugalrl.config import load_config
from frugalrl.data import problems_of
from frugalrl.rewards import reward_functions, score_batch
from frugalrl.selection.dots import group_pass_rates
from frugalrl.selection.embedders import build_embedder
from frugalrl.selection.predictor import (
    apply_calibration,
    attention_predict,
    choose_tau_att,
    fit_calibration,
    gumbel_ranking,
    loo_predict,
    prepare_embeddings,
    selection_logits,
    spearman,
)
from frugalrl.training.build import load_policy_and_backend, resolve_model_path
from frugalrl.types import SamplingParams

ROOT = Path(__file__).resolve().parent.parent
EMBEDDERS = [
    ("hashed_ngrams (digits=mask, default)", "hashed_ngrams", {"digits": "mask"}),
    ("hashed_ngrams (digits=both)", "hashed_ngrams", {"digits": "both"}),
    ("hashed_ngrams (digits=keep)", "hashed_ngrams", {"digits": "keep"}),
    ("policy_mean_pool", "policy_mean_pool", {}),
    ("sentence_transformers (MiniLM)", "sentence_transformers", {}),
]


def measure_pass_rates(count: int, seed: int) -> tuple[list, torch.Tensor]:
    config = load_config(ROOT / "configs" / "grpo.yaml", ["run.threads=1"])
    train, _ = problems_of(config.data)
    picked = np.random.default_rng(seed).choice(len(train), count, replace=False)
    problems = [train[i] for i in picked]
    _, backend = load_policy_and_backend(config.model.path, config)
    sampling = SamplingParams(
        config.rollout.group_size, config.rollout.temperature, config.rollout.top_p, config.rollout.max_new_tokens
    )
    reward = reward_functions.get(config.algo.reward)
    rates = []
    for begin in range(0, count, 64):
        batch = backend.generate(problems[begin : begin + 64], sampling)
        score_batch(batch, reward)
        rates.append(group_pass_rates(batch)[0])
    return problems, torch.cat(rates).float()


def score_embedder(emb: torch.Tensor, y: torch.Tensor, *, draws: int, k: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    rho, mae, informative = [], [], []
    for _ in range(draws):
        ref = torch.from_numpy(rng.choice(len(y), k, replace=False))
        rest = torch.ones(len(y), dtype=torch.bool)
        rest[ref] = False
        tau = choose_tau_att(emb[ref], y[ref])
        calibration = fit_calibration(loo_predict(emb[ref], y[ref], tau_att=tau), y[ref])
        pred = apply_calibration(attention_predict(emb[rest], emb[ref], y[ref], tau_att=tau), calibration)
        served = gumbel_ranking(selection_logits(pred, alpha=0.5, tau_sel=1e-3), rng=rng)[:k]
        truth = y[rest]
        rho.append(spearman(pred, truth))
        mae.append(float((pred - truth).abs().mean()))
        informative.append(float(((truth[served] > 0) & (truth[served] < 1)).float().mean()))
    return {
        "spearman": float(np.mean(rho)),
        "spearman_sd": float(np.std(rho)),
        "mae": float(np.mean(mae)),
        "informative": float(np.mean(informative)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=1024)
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dots_predictor"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # the sampler draws from torch's global generator
    began = time.perf_counter()
    problems, y = measure_pass_rates(args.problems, args.seed)
    rollout_s = time.perf_counter() - began
    uniform = float(((y > 0) & (y < 1)).float().mean())
    rows = []
    for label, name, kwargs in EMBEDDERS:
        try:
            embedder = build_embedder(name, model_path=resolve_model_path("testbed"), **kwargs)
            began = time.perf_counter()
            raw = embedder.embed([p.question for p in problems])
        except ImportError as err:
            print(f"skipping {label}: {err}")
            continue
        embed_s = time.perf_counter() - began
        scores = score_embedder(prepare_embeddings(raw), y, draws=args.draws, k=64, seed=args.seed)
        rows.append({"embedder": label, "embed_seconds": embed_s, **scores})
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "problems": args.problems,
        "draws": args.draws,
        "seed": args.seed,
        "rollout_seconds": rollout_s,
        "mean_pass_rate": float(y.mean()),
        "uniform_informative": uniform,
        "embedders": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# DOTS predictor on the testbed base policy ({args.problems} problems, G = 8, K = 64, {args.draws} draws)",
        "",
        f"Mean pass rate {y.mean():.3f}; informative share under uniform sampling {uniform:.3f}.",
        "",
        "| embedder | Spearman (± sd over draws) | MAE | informative share of 64 served | embed seconds (all) |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['embedder']} | {r['spearman']:.3f} ± {r['spearman_sd']:.3f} | {r['mae']:.3f} | "
        f"{r['informative']:.3f} | {r['embed_seconds']:.1f} |"
        for r in rows
    ]
    lines += [
        "",
        "Reproduce: `python benchmarks/dots_predictor.py "
        + f"--problems {args.problems} --draws {args.draws} --seed {args.seed}` (one CPU thread).",
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
