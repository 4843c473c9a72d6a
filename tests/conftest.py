"""Shared test configuration: offline, deterministic, small thread count."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from frugalrl.data import make_problems, plain_prompt  # noqa: E402
from frugalrl.engine.policy import Policy  # noqa: E402
from frugalrl.engine.rollout import HFGenerateBackend  # noqa: E402
from frugalrl.testbed import build_model, build_tokenizer  # noqa: E402
from frugalrl.types import SamplingParams  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "covers(kind, name): this test is the dedicated test of registry entry `name` of `kind`"
    )


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# Shared by the engine tests: a micro model and a batch it sampled (prompts of several lengths).
@pytest.fixture(scope="module")
def micro_policy() -> Policy:
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    return Policy(build_model(tokenizer, preset="micro", seed=0), tokenizer)


@pytest.fixture(scope="module")
def micro_batch(micro_policy):
    torch.manual_seed(1)
    backend = HFGenerateBackend(
        micro_policy.model, micro_policy.tokenizer, format_prompt=plain_prompt, token_budget=300
    )
    problems = make_problems(5, seed=3)  # questions of different lengths → real left padding
    batch = backend.generate(problems, SamplingParams(n=3, temperature=1.0, max_new_tokens=12))
    batch.rewards = torch.randn(batch.num_rows)
    return batch
