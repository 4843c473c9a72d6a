"""`frugalrl selection ...`: offline tools of the online selectors.

frugalrl selection train-predictor RUN_DIR [RUN_DIR ...] --embedder NAME --out FILE [--epochs N ...]

To mount it: `add_arguments(sub.add_parser("selection", ...))`; each subcommand sets `func`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from frugalrl.selection.trained_predictor import PassRateTask
from frugalrl.tracking.stats import StatsStore
from frugalrl.types import Problem


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="selection_command", required=True)
    train = sub.add_parser(
        "train-predictor",
        help="train the DOTS pass-rate predictor on the statistics of earlier runs",
        description="Fits projection MLPs and a calibration head (DOTS, arXiv 2506.05316) with binary "
        "cross-entropy on the per-prompt pass rates in the runs' stats.sqlite. Use the file with "
        "select.selector_args: {predictor: trained, predictor_path: FILE} and the same embedder.",
    )
    train.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (config.yaml + stats.sqlite)")
    train.add_argument("--embedder", default="hashed_ngrams", help="embedder name (default: hashed_ngrams)")
    train.add_argument("--out", required=True, help="predictor file to write")
    train.add_argument("--epochs", type=int, default=100, help="passes over all windows (default: 100)")
    train.add_argument("--window", type=int, default=20, help="steps per window: one 'policy' (default: 20)")
    train.add_argument("--reference-size", type=int, default=64, help="K reference prompts per split (default: 64)")
    train.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: 1e-3)")
    train.add_argument("--hidden", type=int, default=256, help="hidden width of P_q and P_r (default: 256)")
    train.add_argument("--proj-dim", type=int, default=64, help="output width d of P_q and P_r (default: 64)")
    train.add_argument("--no-center", action="store_true", help="do not centre the embeddings (selector center=false)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu", help="device of the embedder (default: cpu)")
    train.add_argument("--cache-dir", help="embedding cache (default: $FRUGALRL_CACHE/embeddings)")
    train.set_defaults(func=cmd_train_predictor)


def tasks_from_stats(stats: StatsStore, index: dict[str, int], *, window: int) -> list[PassRateTask]:
    """One task per window of `window` steps (steps 1..window, window+1..2·window, ...; training starts at
    step 1): the pass rates of the prompts sampled in it, fresh training rollouts only. Prompts missing
    from `index` (another dataset) are skipped."""
    last = stats.last_step()
    tasks = []
    for start in range(1, last + 1, window) if last is not None else ():
        rates = stats.pass_rates(start, start + window - 1)
        rows = [(index[pid], c / n, n) for pid, (n, c) in rates.items() if pid in index and n > 0]
        if rows:
            table = torch.tensor(rows, dtype=torch.float64)  # [m, 3]: embedding row, pass rate, samples
            tasks.append(PassRateTask(table[:, 0].long(), table[:, 1].float(), table[:, 2].float()))
    return tasks


def _run_problems(run: Path) -> tuple[list[Problem], str]:
    """The training problems and resolved base-model path of the run in `run`, rebuilt from its config."""
    from frugalrl.config import load_config
    from frugalrl.data import problems_of
    from frugalrl.training.build import resolve_model_path

    if not (run / "config.yaml").is_file() or not (run / "stats.sqlite").is_file():
        raise SystemExit(f"{run} is not a run directory (needs config.yaml and stats.sqlite)")
    config = load_config(run / "config.yaml")
    train, _ = problems_of(config.data)
    return train, resolve_model_path(config.model.path)


def cmd_train_predictor(args: argparse.Namespace) -> None:
    from frugalrl.paths import cache_root
    from frugalrl.selection.embedders import build_embedder, embed_problems
    from frugalrl.selection.predictor import prepare_embeddings
    from frugalrl.selection.trained_predictor import save_predictor, train_predictor

    runs = [Path(r) for r in args.runs]
    problems: dict[str, Problem] = {}  # the union of the runs' training sets, embedded once
    model_path = None
    for run in runs:
        train, path = _run_problems(run)
        model_path = model_path or path  # policy_mean_pool embeds with the first run's base model
        problems.update((p.id, p) for p in train if p.id not in problems)
    union = list(problems.values())
    index = {p.id: i for i, p in enumerate(union)}
    embedder = build_embedder(args.embedder, model_path=model_path, device=args.device)
    cache = Path(args.cache_dir) if args.cache_dir else cache_root() / "embeddings"
    embeddings = prepare_embeddings(embed_problems(union, embedder, cache_dir=cache), center=not args.no_center)
    tasks = []
    for run in runs:
        with StatsStore(run / "stats.sqlite") as stats:
            tasks += tasks_from_stats(stats, index, window=args.window)
    model, history = train_predictor(
        embeddings,
        tasks,
        reference_size=args.reference_size,
        epochs=args.epochs,
        lr=args.lr,
        hidden=args.hidden,
        proj_dim=args.proj_dim,
        center=not args.no_center,
        seed=args.seed,
    )
    save_predictor(model, args.out, embedder=args.embedder, embedder_key=embedder.key())
    print(
        f"trained on {len(tasks)} windows of {len(runs)} runs ({len(union)} prompts): "
        f"loss {history[0]:.4f} → {history[-1]:.4f}; wrote {args.out}"
    )
