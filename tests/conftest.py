"""Shared test configuration: offline, deterministic, small thread count."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "covers(kind, name): this test is the dedicated test of registry entry `name` of `kind`"
    )


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
