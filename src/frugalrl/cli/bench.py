"""Command line of the bench: `frugalrl bench ...` (also `python -m frugalrl.cli bench ...`).

To mount it as a subcommand of `frugalrl`: `add_arguments(sub.add_parser("bench", ...))` and
`set_defaults(func=cmd_bench)`.
"""

from __future__ import annotations

import argparse
import sys

from frugalrl.bench.spec import BUDGET_KINDS, BenchSpec, Budget, Recipe

DESCRIPTION = "Compare recipes for sample efficiency: seeded runs under one budget, a table and plots."
EPILOG = """\
example (from the repository root):
  frugalrl bench \\
      --recipe grpo=configs/grpo.yaml --recipe rloo=configs/grpo.yaml:algo.advantage=rloo \\
      --baseline grpo --seeds 0 1 2 --budget time=600 --out benchmarks/results/family \\
      -- run.progress=false

--recipe LABEL=CONFIG[:section.key=value...]   repeatable; CONFIG may be empty for the defaults. An
    override starts at a ':' followed by section.key=, so colons inside values stay.
Common overrides after `--` apply to every run; a recipe's own overrides win over them. run.seed, run.dir,
run.name (and trainer.max_steps / trainer.time_limit under --budget) belong to the bench.
Re-running the same command skips finished runs, resumes interrupted ones and rewrites the summary.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe",
        action="append",
        required=True,
        metavar="LABEL=CONFIG[:KEY=VALUE...]",
        help="a recipe to compare (repeat for each); its runs go to OUT/runs/LABEL/seedK/",
    )
    parser.add_argument("--baseline", help="label of the recipe the others are measured against (default: the first)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="run.seed values (default: 0)")
    parser.add_argument(
        "--budget",
        metavar="|".join(f"{kind}=N" for kind in BUDGET_KINDS),
        help="per run: seconds of training time, RL steps, or generated responses (default: each recipe's own "
        "trainer.max_steps / trainer.time_limit)",
    )
    parser.add_argument("--out", required=True, help="comparison directory (summary.md, summary.json, plots, runs/)")
    parser.add_argument("--metric", help="metric to compare (default: eval/avg@K for the runs' eval.k)")
    parser.add_argument(
        "--isolation",
        choices=["subprocess", "inprocess"],
        default="subprocess",
        help="train each run in a fresh process (default; comparable timings) or in this one (debugging)",
    )
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides for every run (after --)")


def spec_from_args(args: argparse.Namespace) -> BenchSpec:
    return BenchSpec(
        recipes=[Recipe.parse(text) for text in args.recipe],
        out=args.out,
        seeds=args.seeds,
        baseline=args.baseline,
        budget=Budget.parse(args.budget) if args.budget else None,
        overrides=args.overrides,
        metric=args.metric,
        isolation=args.isolation,
    )


def cmd_bench(args: argparse.Namespace) -> None:
    from frugalrl.bench.runner import BenchRunError, run_bench
    from frugalrl.config import ConfigError

    try:
        spec = spec_from_args(args)
        out = run_bench(spec)
    except (ConfigError, ValueError, FileExistsError) as err:
        print(f"bench error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except BenchRunError as err:
        print(f"bench error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    print((out / "summary.md").read_text(encoding="utf-8"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frugalrl bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.isolation == "inprocess":
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # as in frugalrl.cli: loading bars would interleave with the runs
    cmd_bench(args)
