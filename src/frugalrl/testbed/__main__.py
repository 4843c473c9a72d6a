"""``python -m frugalrl.testbed eval [--base DIR]``: per-level greedy / mean@k / pass@k of a testbed base.

The shipped base itself is rebuilt with ``frugalrl testbed build --shipped``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from frugalrl.data.arithmetic import make_problems
from frugalrl.testbed.base import ensure_base
from frugalrl.testbed.evaluate import evaluate


def _eval(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    path = Path(args.base) if args.base else ensure_base()
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    problems = make_problems(args.n, seed=args.seed, split="test")
    result = evaluate(model, tokenizer, problems, k=args.k, temperature=args.temperature, seed=args.seed)
    print(f"{path}\n{result.table()}")
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m frugalrl.testbed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    ev = commands.add_parser("eval", help="evaluate a base on held-out arithmetic")
    ev.add_argument("--base", default=None, help="model directory (default: ensure_base())")
    ev.add_argument("--n", type=int, default=1200, help="held-out problems, spread over the 12 levels")
    ev.add_argument("--k", type=int, default=8, help="samples per problem for mean@k / pass@k")
    ev.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    ev.add_argument("--seed", type=int, default=0, help="seed of the held-out problems and of sampling")
    ev.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ev.add_argument("--json", default=None, help="also write the result to this file")
    ev.set_defaults(run=_eval)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
