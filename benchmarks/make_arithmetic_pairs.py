"""Write a preference-pairs JSONL file on the arithmetic task (frugalrl.data.preference_pairs.arithmetic_pairs).

    python benchmarks/make_arithmetic_pairs.py --out tests/fixtures/arithmetic_pairs.jsonl --size 256

The shipped `tests/fixtures/arithmetic_pairs.jsonl` (read by configs/dpo_offline_lorr.yaml) is this script's
output with the defaults.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from frugalrl.data.preference_pairs import arithmetic_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/arithmetic_pairs.jsonl"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--levels", type=int, nargs="*", default=[1, 2, 3, 4])
    args = parser.parse_args()
    rows = arithmetic_pairs(args.size, seed=args.seed, levels=args.levels)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"wrote {len(rows)} pairs to {args.out}")


if __name__ == "__main__":
    main()
