"""A model path checked before `transformers` loads it, so each mistake gets its own message.

`transformers` reads a mistyped local path as a Hub id (and reports a network or repository error), a
directory without tokenizer files as a missing `sentencepiece`, and a truncated safetensors file as a raw
deserialisation error with no path. `check_model_source` names the path and what is wrong with it first.
"""

from __future__ import annotations

import json
from pathlib import Path

from frugalrl.errors import ModelError, looks_like_local_path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")


def check_model_source(source: str) -> None:
    """Raise a ModelError if `source` is (or reads as) a local path that is not a loadable model directory.
    A Hub id is left to `transformers` (see `load_policy`, which names it if loading fails)."""
    path = Path(source).expanduser()
    if not path.exists():
        if looks_like_local_path(source):
            raise ModelError(f"model.path {source} does not exist (a local path: check it for a typo)")
        return
    if not path.is_dir():
        raise ModelError(f"model.path {source} is a file; give the model's directory")
    if not (path / "config.json").is_file():
        hint = _run_dir_hint(path)
        held = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        raise ModelError(f"model directory {source} has no config.json, so it is not a Hugging Face model "
                         f"(it holds: {held}){hint}")  # fmt: skip
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"model directory {source} has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}); copy them from "
            "the model it was trained from (tokenizer.save_pretrained)"
        )
    _check_weights(path)


def _run_dir_hint(path: Path) -> str:
    if (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():
        return "; it is a frugalrl run directory: use runs/NAME/checkpoints/step_N/model, or `frugalrl eval --model` it"
    return ""


def _check_weights(path: Path) -> None:
    from safetensors import safe_open

    files = sorted({f for pattern in WEIGHT_PATTERNS for f in path.glob(pattern)})
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ModelError(f"weights index {index} is damaged; re-save or re-download the model") from None
        missing = sorted(s for s in shards if not (path / s).is_file())
        if missing:
            raise ModelError(f"model directory {path} lacks the weight shards {missing[:3]} named by {index.name}")
    if not files:
        raise ModelError(f"model directory {path} has no weights (model.safetensors or pytorch_model.bin)")
    for file in (f for f in files if f.suffix == ".safetensors"):
        try:
            with safe_open(str(file), "pt"):
                pass  # opening reads the header and checks that the data it describes is all there
        except Exception as err:
            raise ModelError(
                f"weights file {file} is corrupt or truncated ({str(err).splitlines()[0]}); re-save or re-download it"
            ) from None
