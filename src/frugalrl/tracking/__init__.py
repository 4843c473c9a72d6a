"""Run directory, metrics, per-prompt statistics, atomic writes and the run report.

Everything a training run leaves on disk goes through this package::

    runs/<name>/                 RunDir(path)
      config.yaml                the fully resolved config                 RunDir.config_path
      metrics.jsonl              one JSON object per step                  MetricsLog, read_metrics
      stats.sqlite               per-prompt, per-step statistics           StatsStore, PromptStat
      checkpoints/step_N/        committed atomically                      atomic_directory, latest_checkpoint
      events.out.tfevents.*      optional TensorBoard mirror of the metrics (the `tensorboard` extra)
      wandb/, mlflow.db          optional W&B (offline) and MLflow mirrors (run.report_to; integrations)
      report.md, plots/*.png     summary table and curves                  write_report

Writes are atomic or append-only and flushed: a killed run loses at most the step in flight. To resume
from the checkpoint at step S, truncate the logs to it: `MetricsLog.truncate_after(S)` and
`StatsStore.truncate_after(S)`.

Metric namespaces
-----------------
Every metric key is `<namespace>/<name>`; the docs hold the full per-key table. The namespaces:

    loss/     the optimised objective and its terms: policy loss, KL penalty, entropy, preference losses
    adv/      advantage statistics: mean, std, fraction of exactly-zero advantages
    rollout/  the responses generated this step: reward_mean/std, response length, truncation rate
    data/     how much of the batch carried learning signal: frac_all_correct and frac_all_wrong (groups
              whose rewards are all equal, so group-relative advantages are zero), effective_step
    replay/   replay buffers (RR, RePO, LoRR): size, fraction of the batch replayed, age of replayed samples
    select/   prompt selection (DOTS, LIMR, group filters): predicted difficulty, pass rate of the selected
              prompts, fraction kept
    time/     wall-clock seconds; `time/train_elapsed` is cumulative training time, evaluation excluded
    eval/     held-out evaluation, present only on steps where it ran: `eval/[<subset>/]avg@k`,
              `eval/[<subset>/]pass@k`, `eval/greedy`, per-level breakdowns under a subset name
    count/    cumulative counters since the start of the run: `count/responses` (generated responses),
              `count/gen_tokens` (generated tokens), `count/train_tokens` (tokens in policy updates)

The x axes of every efficiency plot are `step`, `count/responses` and `time/train_elapsed`.

Non-finite values (a NaN loss, an infinite ratio) are stored in metrics.jsonl as the strings "NaN",
"Infinity", "-Infinity", which keeps the file strict JSON, and read back as floats by `read_metrics`.
"""

from frugalrl.tracking.atomic import (
    COMMIT_MARKER,
    atomic_directory,
    atomic_write_bytes,
    atomic_write_text,
    is_committed,
)
from frugalrl.tracking.metrics import NAMESPACES, MetricsLog, Record, merge_steps, read_metrics
from frugalrl.tracking.plots import (
    X_AXES,
    Series,
    curves_figure,
    plot_bands,
    plot_curves,
    save_figure,
    seed_band,
    series,
)
from frugalrl.tracking.report import EvalSummary, RunSummary, eval_keys, summarize, write_report
from frugalrl.tracking.rundir import RunDir
from frugalrl.tracking.stats import PromptStat, StatsStore

__all__ = [
    "COMMIT_MARKER",
    "NAMESPACES",
    "X_AXES",
    "EvalSummary",
    "MetricsLog",
    "PromptStat",
    "Record",
    "RunDir",
    "RunSummary",
    "Series",
    "StatsStore",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_text",
    "curves_figure",
    "eval_keys",
    "is_committed",
    "merge_steps",
    "plot_bands",
    "plot_curves",
    "read_metrics",
    "save_figure",
    "seed_band",
    "series",
    "summarize",
    "write_report",
]
