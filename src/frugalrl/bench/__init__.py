"""Sample-efficiency benchmarks: seeded runs of several recipes under one budget, compared to a baseline.

Command line (`frugalrl bench` once the CLI mounts it; the same arguments)::

    frugalrl bench \\
        --recipe grpo=configs/grpo.yaml \\
        --recipe rloo=configs/grpo.yaml:algo.advantage=rloo \\
        --baseline grpo --seeds 0 1 2 --budget time=600 \\
        --out benchmarks/results/family [--metric eval/avg@8] [-- common overrides]

- `--recipe LABEL=CONFIG[:section.key=value...]`, once per recipe: a label (it names the run directories),
  a YAML recipe (empty: the defaults) and that recipe's own overrides, each starting at a ':' followed by
  `section.key=`.
- `--budget time=SECONDS | steps=N | responses=N` per run: `trainer.time_limit` (max_steps unbounded;
  decaying lr schedules are refused), `trainer.max_steps`, or `ceil(N / (prompts_per_step × group_size))`
  steps, since the trainer generates exactly B·G responses a step (recipes with dynamic sampling are refused
  a responses budget). Without it, recipes keep their own.
- `--baseline` names the recipe the others are measured against (default: the first).
- Overrides after `--` apply to every run; a recipe's own overrides win over them.

Python::

    from frugalrl.bench import BenchSpec, Budget, Recipe, run_bench, summarise

    spec = BenchSpec(
        recipes=[Recipe("grpo", "configs/grpo.yaml"), Recipe("rloo", "configs/grpo.yaml", ("algo.advantage=rloo",))],
        baseline="grpo", seeds=[0, 1, 2], budget=Budget("time", 600), out="benchmarks/results/family",
    )
    out = run_bench(spec)        # runs what is not finished, then summarise(out)
    summarise(out)               # recompute the summary from the runs on disk alone

The comparison directory::

    <out>/bench.json                     the spec (summarise reads it)
    <out>/runs/<label>/seed<k>/          one ordinary run directory per recipe × seed
    <out>/summary.md, summary.json       per recipe: final and best held-out accuracy (mean, min–max over
                                         seeds), steps, responses, tokens, training time, time and
                                         responses to the baseline's final accuracy and the saving
    <out>/accuracy.png                   accuracy vs training time and vs generated responses, seed bands
    <out>/dynamics.png                   loss/entropy and (if logged) KL to the initial policy vs step

Runs go one after another, never concurrently, each in a fresh process; re-running the same bench skips
finished runs and resumes interrupted ones (`frugalrl.bench.runner`). The definitions of every number,
time-to-target included, are in `frugalrl.bench.analysis`.

Evaluation points are the trainer's: every `eval.every` steps, plus the first and last step. Time and
responses to target are interpolated between them, which is fair while methods cost about the same per
step; when per-step costs differ a lot (replay, selection, several updates per batch), the cheaper method
is evaluated more often per second or per response and its crossing is located more precisely. A schedule
in generated responses (evaluate every N responses, whatever a step costs) would remove that asymmetry; it
needs a trainer hook (an `eval.every_responses` key), described in benchmarks/README.md.
"""

from frugalrl.bench.analysis import (
    Comparison,
    EvalPoint,
    RecipeResult,
    SeedResult,
    Spread,
    ToTarget,
    compare,
    eval_points,
    first_crossing,
    mean_curve,
    reduction,
)
from frugalrl.bench.runner import BenchRunError, RunOutcome, plan_matrix, run_action, run_bench, run_matrix
from frugalrl.bench.spec import BenchSpec, Budget, Recipe
from frugalrl.bench.summary import default_metric, summarise

__all__ = [
    "BenchRunError",
    "BenchSpec",
    "Budget",
    "Comparison",
    "EvalPoint",
    "Recipe",
    "RecipeResult",
    "RunOutcome",
    "SeedResult",
    "Spread",
    "ToTarget",
    "compare",
    "default_metric",
    "eval_points",
    "first_crossing",
    "mean_curve",
    "plan_matrix",
    "reduction",
    "run_action",
    "run_bench",
    "run_matrix",
    "summarise",
]
