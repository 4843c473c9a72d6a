"""Several processes (torchrun, gloo on the CPU): the same update as one process, one run directory, exact
resume, two "nodes" on one machine, and a killed rank that ends the job instead of hanging it."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from frugalrl.config import ConfigError, load_config
from frugalrl.engine.checkpoint import MODEL_DIR
from frugalrl.engine.policy import load_policy
from frugalrl.testbed import ensure_base
from frugalrl.testbed.base_spec import named_base
from frugalrl.tracking import RunDir, read_metrics
from frugalrl.training.distributed import start_ranks
from frugalrl.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
RUN = [
    "model.path=testbed-arith",  # the first testbed: its short answers earn rewards within 24 tokens
    "data.source=arithmetic",
    "data.levels=[1,2,3,4]",
    "run.progress=false",
    "run.threads=1",
    "data.train_size=64",
    "data.eval_size=8",
    "trainer.prompts_per_step=4",
    "rollout.group_size=4",
    "rollout.max_new_tokens=24",
    "eval.num_problems=4",
    "eval.k=2",
    "eval.every=2",
    "distributed.timeout=60",
]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def _train(run_dir: Path, *overrides: str) -> list[str]:
    return ["-m", "frugalrl", "train", str(REPO / "configs/grpo.yaml"), *RUN, f"run.dir={run_dir}", *overrides]


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def _comparable(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in read_metrics(path)]


def _layout(run: Path) -> set[str]:
    return {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def spawned():
    """The launches a test starts; any still running when it ends (a failed assertion) are terminated, which
    torchrun passes on to its workers."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _fsdp_on_cpu() -> str | None:
    """Why FSDP2 cannot run here, or None."""
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError as err:
        return f"this torch ({torch.__version__}) has no FSDP2: {err}"
    return None


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch was built without gloo")
def test_two_ranks_compute_the_single_process_update(tmp_path, micro_policy, spawned):
    """The policy update (and PPO's critic update) of each recipe on one fixed batch: two ranks, each on its
    share of the rows, end with the gradient and weights one process computes on all of them; the summed
    loss is the same (the token mean divides by the global token count, not each rank's). Both with the
    weights replicated (ddp) and sharded (fsdp, FSDP2 on the CPU), whose checkpoint is also saved (the full
    weights, loadable with from_pretrained) and loaded back into shards."""
    import distributed_cases

    model = tmp_path / "model"
    micro_policy.save(model)
    strategies = ["ddp"] + ([] if _fsdp_on_cpu() else ["fsdp"])
    launches = {}
    for strategy in strategies:
        (tmp_path / strategy).mkdir()
        cmd = _torchrun("--standalone", "--nproc-per-node", "2", str(REPO / "tests/distributed_cases.py"))
        launches[strategy] = subprocess.Popen(
            [*cmd, str(model), str(tmp_path / strategy), strategy], env=_env(), stderr=subprocess.PIPE, text=True
        )
        spawned.append(launches[strategy])
    (tmp_path / "one").mkdir()
    threads = torch.get_num_threads()
    try:
        distributed_cases.main(str(model), str(tmp_path / "one"))  # one process, while the two ranks run
    finally:
        torch.set_num_threads(threads)
    one = torch.load(tmp_path / "one/rank0.pt")["cases"]
    assert set(one) == {name for name, *_ in distributed_cases.CASES}
    for strategy, launch in launches.items():
        assert launch.wait(timeout=300) == 0, launch.stderr.read()[-3000:]
        _check_same_update(one, *(torch.load(tmp_path / strategy / f"rank{r}.pt") for r in (0, 1)))
    if "fsdp" in launches:  # the sharded checkpoint: gathered into the HF layout, re-sharded on load
        ranks = [torch.load(tmp_path / f"fsdp/rank{r}.pt") for r in (0, 1)]
        assert [r["round_trip"] for r in ranks] == [True, True]
        saved = load_policy(tmp_path / "fsdp/checkpoint" / MODEL_DIR).model
        weights = torch.cat([p.detach().reshape(-1) for p in saved.parameters()])
        assert torch.equal(weights, ranks[0]["cases"]["grpo"]["policy_weights"])
    if reason := _fsdp_on_cpu():
        pytest.skip(f"ddp checked; fsdp not: {reason}")


def _check_same_update(one: dict, rank0: dict, rank1: dict) -> None:
    assert rank0["world_size"] == 2
    for name, expected in one.items():
        got = rank0["cases"][name]
        assert got["rows"] == expected["rows"] > 0, name
        # sums over rows and gradient norms: the same on 1 and 2 ranks
        for key in ("loss/policy", "loss/total", "loss/grad_norm", "critic/loss", "critic/grad_norm"):
            if key in expected["metrics"]:
                assert got["metrics"][key] == pytest.approx(expected["metrics"][key], rel=1e-5, abs=1e-7), name
        for key in [k for k in expected if k.endswith(("_grad", "_weights"))]:
            assert expected[key].abs().max() > 0, (name, key)  # a real gradient, not a vacuous comparison
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=2e-6, msg=f"{name} {key}")
            assert torch.equal(rank1["cases"][name][key], got[key]), f"{name} {key}: the ranks' copies diverged"


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch was built without gloo")
def test_two_nodes_write_one_run_directory_and_a_killed_rank_resumes_exactly(tmp_path, spawned):
    """Two torchrun launches (--nnodes 2, one rank each) train 4 steps into one run directory laid out as a
    single process's. A standalone 2-rank run of the same config, its rank 1 killed with SIGKILL after a
    checkpoint, ends with torchrun naming that rank; resumed, it logs exactly the two-node run's metrics."""
    whole, killed, single = tmp_path / "whole", tmp_path / "killed", tmp_path / "single"
    port = _free_port()
    node = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-id", "two-nodes",
            "--rdzv-endpoint", f"127.0.0.1:{port}"]  # fmt: skip
    node_cmd = _torchrun(*node, *_train(whole, "trainer.max_steps=4", "trainer.checkpoint_every=2"))
    launches = [subprocess.Popen(node_cmd, env=_env(), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    spawned.extend(launches)
    victim = subprocess.Popen(
        _torchrun("--standalone", "--nproc-per-node", "2", *_train(killed, "trainer.max_steps=200",
                  "trainer.checkpoint_every=1")),
        env=_env(), stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    spawned.append(victim)
    rank1 = _kill_rank_after_first_checkpoint(victim, RunDir(killed))
    stderr = victim.communicate(timeout=120)[1]
    assert victim.returncode != 0
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)", stderr) and "-9" in stderr, stderr[-2000:]
    assert f"pid: {rank1}" in stderr
    for launch in launches:
        assert launch.wait(timeout=300) == 0, launch.stderr.read()[-3000:]

    Trainer(load_config(REPO / "configs/grpo.yaml", [*RUN, f"run.dir={single}", "trainer.max_steps=4",
                                                     "trainer.checkpoint_every=2"])).run()  # fmt: skip
    assert _layout(whole) == _layout(single)  # one metrics.jsonl, stats.sqlite, report, the same checkpoints
    metrics = read_metrics(whole / "metrics.jsonl")
    assert [r["step"] for r in metrics] == [0, 1, 2, 3, 4]  # written once, by rank 0
    trained = load_policy(whole / "checkpoints/step_4" / MODEL_DIR).model.state_dict()  # the usual HF layout
    base = load_policy(ensure_base(named_base("testbed-arith"))).model.state_dict()
    assert any(not torch.equal(trained[k], base[k]) for k in base)

    again = subprocess.run(  # a new run over an existing one: rank 0's error ends both ranks, no hang
        _torchrun("--standalone", "--nproc-per-node", "2", *_train(whole, "trainer.max_steps=4")),
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode != 0 and "already holds a run; pass --resume" in again.stderr, again.stderr[-2000:]

    resumed = subprocess.run(
        _torchrun("--standalone", "--nproc-per-node", "2", *_train(killed, "trainer.max_steps=4"), "--resume"),
        env=_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    _check(resumed)
    assert _comparable(killed / "metrics.jsonl") == _comparable(whole / "metrics.jsonl")


def _kill_rank_after_first_checkpoint(launcher: subprocess.Popen, run: RunDir) -> int:
    """SIGKILL the worker with RANK=1 of `launcher` once the run's first checkpoint exists; returns its pid."""
    deadline = time.monotonic() + 180
    while not run.checkpoint_steps():
        assert launcher.poll() is None, launcher.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(0.05)
    assert max(run.checkpoint_steps()) < 4, "the run got past step 4 before the kill; the test cannot resume it"
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    for pid in map(int, children):
        if b"\x00RANK=1\x00" in b"\x00" + Path(f"/proc/{pid}/environ").read_bytes():
            os.kill(pid, signal.SIGKILL)
            return pid
    raise AssertionError(f"no worker with RANK=1 among {children}")


def test_distributed_settings_are_checked_before_any_process_group(monkeypatch):
    with pytest.raises(ConfigError, match="distributed.strategy='zero' is not one of: ddp, fsdp"):
        load_config(None, ["distributed.strategy=zero"])
    with pytest.raises(ConfigError, match="distributed.timeout"):
        load_config(None, ["distributed.timeout=0"])
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; the refusals come before joining any group
    with pytest.raises(ConfigError, match="algo.kind=preference runs in one process"):
        start_ranks(load_config(REPO / "configs/iterdpo.yaml"))
    with pytest.raises(ConfigError, match="with model.lora.r or rollout.backend=vllm use distributed.strategy=ddp"):
        start_ranks(load_config(None, ["distributed.strategy=fsdp", "model.lora.r=8"]))
    assert not torch.distributed.is_initialized()
