"""The trainable DOTS pass-rate predictor (arXiv 2506.05316, §3.2): projection MLPs P_q, P_r for attention
over the reference set, and a calibration head, trained offline with binary cross-entropy on pass rates that
earlier runs recorded in `stats.sqlite`.

    b_q = Σ_j softmax_j(⟨P_r e_j, P_q e_q⟩ / √d) · y_j
    p̂_q = sigmoid(logit(clamp(b_q, ε, 1−ε)) / T + β),   (T, β) = head(mean_j y_j, std_j y_j)

Shapes: Q query prompts, K reference prompts, H embedding width, d projection width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

FORMAT = "frugalrl-dots-predictor"
VERSION = 1


def _mlp(width_in: int, hidden: int, width_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width_in, hidden), nn.GELU(), nn.Linear(hidden, width_out))


class TrainedPredictor(nn.Module):
    """Attention with learned query/reference projections and a label-statistics calibration head.

    `forward(query, ref, labels, exclude=None)` has the signature of `attention_predict` (without τ: the
    projections learn the scale) and returns [Q] pass rates in (0, 1). `center` records how the training
    embeddings were prepared (`prepare_embeddings`), so the selector prepares its own the same way.
    """

    def __init__(
        self,
        dim: int,
        *,
        hidden: int = 256,
        proj_dim: int = 64,
        head_hidden: int = 16,
        center: bool = True,
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        self.dims = {"dim": dim, "hidden": hidden, "proj_dim": proj_dim, "head_hidden": head_hidden, "center": center}
        self.center = center
        self.eps = eps
        self.p_q = _mlp(dim, hidden, proj_dim)
        self.p_r = _mlp(dim, hidden, proj_dim)
        self.head = _mlp(2, head_hidden, 2)

    def forward(self, query: Tensor, ref: Tensor, labels: Tensor, exclude: Tensor | None = None) -> Tensor:
        logits = self.p_q(query) @ self.p_r(ref).T / math.sqrt(self.dims["proj_dim"])  # [Q, K]
        if exclude is not None:  # [Q] reference row each query must not see, -1 for none (leave-one-out)
            rows = (exclude >= 0).nonzero().squeeze(-1)
            logits = logits.index_put((rows, exclude[rows]), torch.tensor(float("-inf")))
        b = logits.softmax(-1) @ labels.float()  # [Q]
        stats = torch.stack([labels.float().mean(), labels.float().std(correction=0)])  # [2]
        t_raw, beta = self.head(stats).unbind()
        temperature = nn.functional.softplus(t_raw) + 0.05  # > 0: a negative T would invert the ranking
        return torch.sigmoid(torch.logit(b.clamp(self.eps, 1 - self.eps)) / temperature + beta)


@dataclass(frozen=True)
class PassRateTask:
    """Pass rates that one policy (one run over one window of steps) had on a set of prompts.

    index: [m] long rows of the embedding matrix; rate: [m] correct/samples; samples: [m] responses behind
    each rate (the BCE weight: a rate from 16 responses counts twice one from 8).
    """

    index: Tensor
    rate: Tensor
    samples: Tensor


def predictor_loss(
    model: TrainedPredictor,
    embeddings: Tensor,
    task: PassRateTask,
    *,
    reference_size: int,
    generator: torch.Generator,
    max_queries: int = 1024,
) -> Tensor:
    """Weighted BCE of the queries' predicted pass rates, with a random split of `task` into K reference
    prompts (labels given to the model) and up to `max_queries` queries (labels to predict)."""
    order = torch.randperm(task.index.shape[0], generator=generator)
    ref, queries = order[:reference_size], order[reference_size : reference_size + max_queries]
    pred = model(embeddings[task.index[queries]], embeddings[task.index[ref]], task.rate[ref])  # [Q]
    target, weight = task.rate[queries].float(), task.samples[queries].float()
    bce = nn.functional.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), target, reduction="none")  # [Q]
    return (bce * weight).sum() / weight.sum()


def train_predictor(
    embeddings: Tensor,
    tasks: list[PassRateTask],
    *,
    reference_size: int = 64,
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    hidden: int = 256,
    proj_dim: int = 64,
    center: bool = True,
    seed: int = 0,
) -> tuple[TrainedPredictor, list[float]]:
    """Fits a `TrainedPredictor` on `tasks` (Adam, one random reference/query split per task per epoch).

    Args: embeddings [n, H] of every prompt the tasks index, prepared by `prepare_embeddings(..., center=center)`
    (`center` is only recorded in the model); tasks with more than `reference_size` prompts
    (smaller ones are skipped). Returns the model (eval mode) and the mean loss of each epoch.
    """
    usable = [t for t in tasks if t.index.shape[0] > reference_size]
    if not usable:
        sizes = sorted({int(t.index.shape[0]) for t in tasks})
        raise ValueError(
            f"no task has more than reference_size={reference_size} prompts (sizes: {sizes[:10]}); "
            "lower the reference size or widen the step window"
        )
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TrainedPredictor(embeddings.shape[1], hidden=hidden, proj_dim=proj_dim, center=center)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for _ in range(epochs):
        total = 0.0
        for i in torch.randperm(len(usable), generator=generator).tolist():
            loss = predictor_loss(model, embeddings, usable[i], reference_size=reference_size, generator=generator)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
        history.append(total / len(usable))
    return model.eval(), history


def save_predictor(model: TrainedPredictor, path: Path | str, *, embedder: str, embedder_key: str) -> None:
    """Writes the model and the embedder it was trained for (the selector checks that they match)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "dims": model.dims,
        "embedder": embedder,
        "embedder_key": embedder_key,
        "state_dict": model.state_dict(),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_predictor(path: Path | str, *, embedder_key: str | None = None) -> TrainedPredictor:
    """Reads a file of `save_predictor`; with `embedder_key`, refuses a model trained on other embeddings."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a DOTS predictor file (make one with `frugalrl selection train-predictor`)")
    if payload["version"] != VERSION:
        raise ValueError(f"{path} has predictor format version {payload['version']}; this frugalrl reads {VERSION}")
    if embedder_key is not None and payload["embedder_key"] != embedder_key:
        raise ValueError(
            f"{path} was trained on embeddings {payload['embedder_key']!r} (embedder {payload['embedder']!r}), "
            f"but the selector uses {embedder_key!r}; set selector_args.embedder to match or retrain the predictor"
        )
    dims = payload["dims"]
    model = TrainedPredictor(dims.pop("dim"), **dims)
    model.load_state_dict(payload["state_dict"])
    return model.eval()
