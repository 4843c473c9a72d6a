"""The testbed base model: built by supervised warm start, cached by recipe hash, shipped with the package.

``ensure_base()`` is the entry point: it returns a base shipped in ``testbed/assets/`` when one was built
from the recipe asked for, else a cached build under ``$FRUGALRL_CACHE/testbed/<hash>`` (default
``~/.cache/frugalrl``), building it on first use. Two bases ship (`SHIPPED_BASES`): ``testbed-columns``,
the default, and ``testbed-arith``, the first testbed; ``frugalrl testbed build --shipped --base NAME``
regenerates one.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch
import transformers
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from frugalrl.paths import cache_root
from frugalrl.testbed.base_spec import BUILD_VERSION, DEFAULT_BASE, BaseSpec, named_base
from frugalrl.testbed.model import build_model, n_params
from frugalrl.testbed.sft import train_phase
from frugalrl.testbed.tokenizer import build_tokenizer

ASSETS = Path(__file__).parent / "assets"
SHIPPED_BASES = {"testbed-columns": ASSETS / "columns", "testbed-arith": ASSETS / "base"}
SHIPPED_BASE = SHIPPED_BASES[DEFAULT_BASE]
RECIPE_FILE = "recipe.json"  # written last: a directory without it is an unfinished build


def read_recipe_record(path: str | Path) -> dict | None:
    """The ``recipe.json`` record of a saved base (hash, recipe, build facts), or None if absent."""
    file = Path(path) / RECIPE_FILE
    return json.loads(file.read_text()) if file.is_file() else None


def build_base(
    recipe: BaseSpec | None = None,
    out_dir: str | Path | None = None,
    *,
    progress: bool = True,
    threads: int | None = None,
) -> Path:
    """Trains the base of `recipe` (default: the default base's) and saves it, HF format, to `out_dir`.

    `out_dir` defaults to the cache directory of the recipe's hash. The build writes into a temporary
    sibling and renames it into place, so an interrupted build never leaves a directory that looks
    finished. `threads`, if given, sets torch's CPU threads for the build (restored afterwards; the shipped
    base used 2). Results are bit-reproducible for a given recipe, thread count and machine.
    """
    recipe = recipe or named_base(DEFAULT_BASE)
    out = Path(out_dir) if out_dir is not None else cache_root() / "testbed" / recipe.hash()
    out.parent.mkdir(parents=True, exist_ok=True)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        tokenizer = build_tokenizer()
        model = build_model(tokenizer, preset=recipe.preset, arch=recipe.arch, seed=recipe.seed)
        phase_losses = _train_all(model, tokenizer, recipe, progress)
        record = {
            "hash": recipe.hash(),
            "build_version": BUILD_VERSION,
            "recipe": recipe.to_dict(),
            "build": {
                "seconds": round(time.perf_counter() - start, 1),
                "threads": torch.get_num_threads(),
                "n_params": n_params(model),
                # per phase: mean loss over its first 10 and last 50 steps
                "loss_start": [round(sum(ls[:10]) / len(ls[:10]), 4) for ls in phase_losses],
                "loss_end": [round(sum(ls[-50:]) / len(ls[-50:]), 4) for ls in phase_losses],
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "machine": platform.machine(),
            },
        }
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / RECIPE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        # mkdtemp (and safetensors) create owner-only files; a cache or a shipped asset should be readable
        tmp.chmod(0o755)
        for file in tmp.iterdir():
            file.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return out
    finally:
        torch.set_num_threads(old_threads)


def _train_all(model, tokenizer, recipe: BaseSpec, progress: bool) -> list[list[float]]:
    total = sum(p.steps for p in recipe.phases)
    columns = (
        TextColumn("[bold]testbed base[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("", total=total, loss=float("nan"))
        losses = []
        for i in range(len(recipe.phases)):
            bar.update(task, description=f"phase {i + 1}/{len(recipe.phases)}")
            losses.append(
                train_phase(model, recipe, i, tokenizer, on_step=lambda _, loss: bar.update(task, advance=1, loss=loss))
            )
    return losses


def ensure_base(
    recipe: BaseSpec | None = None,
    cache_dir: str | Path | None = None,
    *,
    progress: bool = True,
    threads: int | None = None,
) -> Path:
    """Directory of the base for `recipe` (default base if None), building and caching it if needed.

    Prefers a shipped base whose recorded hash is the recipe's; then ``<cache_dir>/testbed/<hash>``
    (`cache_dir` defaults to `cache_root()`); else builds there (10–20 minutes on 2 CPU threads).
    """
    recipe = recipe or named_base(DEFAULT_BASE)
    digest = recipe.hash()
    for shipped_dir in SHIPPED_BASES.values():
        shipped = read_recipe_record(shipped_dir)
        if shipped is not None and shipped["hash"] == digest:
            return shipped_dir
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    cached = root / "testbed" / digest
    record = read_recipe_record(cached)
    if record is not None and record["hash"] == digest:
        return cached
    return build_base(recipe, cached, progress=progress, threads=threads)
