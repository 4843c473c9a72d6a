"""Answer verification with a hard timeout: fast path, then math-verify in a child process. ALGORITHMS.md §1.

Why a process: math-verify's own timeouts use SIGALRM, which only works in the main thread, and sympy can
sit in C code (big-integer powers) where no signal is seen. A separate process can always be killed, so a
verdict arrives within `timeout` + `KILL_GRACE_S` seconds whatever the answer is and whichever thread asks.

Design of `MathVerifyWorker`:
  * one long-lived child (`python -c ... _worker.main()`), started lazily, reused across calls, so the ~1 s
    of starting Python and importing sympy is paid once, not per answer;
  * requests and verdicts are JSON lines over pipes; the child arms its own SIGALRM deadline (it runs
    math-verify in its main thread) and answers "timeout" itself, which keeps the child alive;
  * if no answer arrives by `timeout` + `KILL_GRACE_S`, the parent kills the child and the next call starts
    a fresh one; a crashed child is noticed the same way;
  * the child is stopped at interpreter exit, and exits on its own when the parent's pipe closes;
  * calls are serialised by a lock, so any thread may call; after os.fork() a child process starts its own
    worker instead of talking to (or killing) the parent's.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path

from frugalrl.rewards.extract import MAX_ANSWER_CHARS, compare_fast
from frugalrl.rewards.stats import note

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3.0
# Extra wall time the parent allows for the child's own "timeout" reply before it kills the child.
KILL_GRACE_S = 1.0
# Starting the child imports sympy: seconds on an idle machine, longer on a loaded one; not part of `timeout`.
STARTUP_TIMEOUT_S = 120.0
# Predictions longer than this are wrong without asking sympy: no gold answer in the math sets we target is
# a tenth as long, and parsing such strings is where math-verify spends seconds (and accepts `1+1+...+1` = 1).
MAX_PREDICTION_CHARS = 1_000

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding the `frugalrl` package
_WORKER_CODE = "import sys; sys.path[0] = {root!r}; from frugalrl.rewards._worker import main; main()"  # no cwd on path


class Verdict(enum.Enum):
    """Outcome of checking one answer. TIMEOUT also covers a verifier process that died mid-answer."""

    CORRECT = "correct"
    WRONG = "wrong"
    TIMEOUT = "timeout"


def _stop_process(proc: subprocess.Popen, owner_pid: int) -> None:
    """Close the child's stdin (it exits on EOF), kill it if it does not. Only the process that started it."""
    if os.getpid() != owner_pid:
        return  # a forked copy of the parent must not stop the parent's worker
    try:
        proc.stdin.close()
        proc.wait(timeout=0.5)  # an idle child exits at once on EOF; a busy or frozen one is killed
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    proc.stdout.close()


def spawn_worker_process() -> subprocess.Popen:
    """A fresh math-verify child (not yet ready: it writes {"ready": true} once sympy is imported)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # subprocess execs a fresh interpreter rather than forking this one: fork() copies a process that may
    # hold torch/CUDA/tokenizer threads and their locks, and multiprocessing's spawn would re-import the
    # caller's __main__ (re-running an unguarded training script).
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER_CODE.format(root=_PACKAGE_ROOT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
        env=env,
    )


def startup_failure(startup_timeout: float, code: int | None) -> str:
    return (
        f"the math-verify worker did not start in {startup_timeout:.0f} s (exit code {code}); "
        f"check that `{sys.executable} -c 'import math_verify'` works (its error is printed above)"
    )


class MathVerifyWorker:
    """A reusable math-verify child process with a per-call hard timeout. Thread-safe; see the module doc."""

    def __init__(self, *, startup_timeout: float = STARTUP_TIMEOUT_S) -> None:
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner_pid = os.getpid()
        self._finalizer: weakref.finalize | None = None
        _instances.add(self)

    @property
    def pid(self) -> int | None:
        """Process id of the running child, or None when none is running."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def start(self) -> None:
        """Start the child now (otherwise the first `verify` does); e.g. to warm it up before training."""
        with self._lock:
            self._ensure_started()

    def close(self) -> None:
        """Stop the child. The worker stays usable: the next `verify` starts a new one."""
        with self._lock:
            self._stop()

    def verify(self, prediction: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Verdict:
        """math-verify's `verify(parse(gold), parse(prediction))`, both wrapped in `$...$`; at most
        `timeout` + `KILL_GRACE_S` seconds once the child is running."""
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive, finite number of seconds, got {timeout!r}")
        request = (json.dumps({"pred": prediction, "gold": gold, "timeout": timeout}) + "\n").encode()
        with self._lock:
            self._ensure_started()
            try:
                self._write(request)
            except OSError:  # the child died since the last call (killed, OOM): one fresh try
                self._stop()
                self._ensure_started()
                self._write(request)
            reply = self._read_line(time.monotonic() + timeout + KILL_GRACE_S)
            if not reply:
                if reply == b"":  # it closed its end: crashed (segfault, OOM kill) on this answer
                    logger.warning("math-verify worker died on an answer; scored as timeout")
                self._proc.kill()  # stuck in sympy (or dead): no point waiting for a polite exit
                self._stop()
                return Verdict.TIMEOUT
        return Verdict(json.loads(reply)["verdict"])

    # --- internals; callers hold self._lock ---

    def _ensure_started(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._stop()
        self._proc = spawn_worker_process()
        self._finalizer = weakref.finalize(self, _stop_process, self._proc, self._owner_pid)
        ready = self._read_line(time.monotonic() + self.startup_timeout)
        if not ready or not json.loads(ready).get("ready"):
            self._proc.kill()
            code = self._proc.wait()  # our kill if it hung, its own exit code if it failed
            self._stop()
            raise RuntimeError(startup_failure(self.startup_timeout, code))

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's child process without stopping it, and start afresh."""
        self._lock = threading.Lock()  # another thread may have held it at fork time, forever in this copy
        if self._finalizer is not None:
            self._finalizer.detach()  # never stop the parent's worker from this process's exit hooks
        if self._proc is not None:
            for pipe in (self._proc.stdin, self._proc.stdout):
                pipe.close()  # our copies only; they would keep the parent's worker from seeing EOF
        self._proc, self._finalizer, self._owner_pid = None, None, os.getpid()

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_process once and unregisters it from the exit hooks
        self._proc, self._finalizer = None, None

    def _write(self, data: bytes) -> None:
        fd = self._proc.stdin.fileno()
        while data:
            data = data[os.write(fd, data) :]

    def _read_line(self, deadline: float) -> bytes | None:
        """One reply line from the child; b"" if it closed its end first, None if `deadline` passed first."""
        fd = self._proc.stdout.fileno()
        poller = select.poll()  # not select.select: a training process can hold fds past its 1024 limit
        poller.register(fd, select.POLLIN)
        buffer = b""
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(math.ceil(remaining * 1000)):
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return b""
            buffer += chunk
        return buffer


_instances: weakref.WeakSet[MathVerifyWorker] = weakref.WeakSet()
_default_worker: MathVerifyWorker | None = None
_default_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for worker in list(_instances):
        worker._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def default_worker() -> MathVerifyWorker:
    """The process-wide worker used by `verify_answer` (created on first use, stopped at exit)."""
    global _default_worker
    with _default_lock:
        if _default_worker is None:
            _default_worker = MathVerifyWorker()  # its finalizer stops the child at interpreter exit
        return _default_worker


def quick_verdict(prediction: object, gold: str) -> Verdict | None:
    """The verdict when it needs no math-verify, else None. Bounded time on any input.

    In order: a prediction that is not a non-blank string is WRONG; one over `MAX_ANSWER_CHARS` raw
    characters is WRONG before any normalisation (so no pass over a megabyte of `$` ever runs); the
    exact/numeric fast path (`compare_fast`) decides when it can; what is still over `MAX_PREDICTION_CHARS`
    after that is WRONG.
    """
    if not isinstance(prediction, str) or len(prediction) > MAX_ANSWER_CHARS or not prediction.strip():
        return Verdict.WRONG
    fast = compare_fast(prediction, gold)
    if fast is not None:
        return Verdict.CORRECT if fast else Verdict.WRONG
    if len(prediction) > MAX_PREDICTION_CHARS:
        return Verdict.WRONG
    return None


class VerdictCache:
    """Bounded LRU of math-verify verdicts keyed by (prediction, gold); thread-safe.

    CORRECT and WRONG are facts about the pair and are reused for any timeout. TIMEOUT is stored with the
    timeout it was given and reused only for a call with the same or a shorter one: an answer that beat
    neither 3 s then nor now is not tried again, but a longer budget gets its chance.
    """

    def __init__(self, max_entries: int = 65_536) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[Verdict, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, prediction: str, gold: str, timeout: float) -> Verdict | None:
        with self._lock:
            entry = self._entries.get((prediction, gold))
            if entry is None:
                return None
            self._entries.move_to_end((prediction, gold))
        verdict, tried_for = entry
        return None if verdict is Verdict.TIMEOUT and timeout > tried_for else verdict

    def put(self, prediction: str, gold: str, verdict: Verdict, timeout: float) -> None:
        with self._lock:
            self._entries[(prediction, gold)] = (verdict, timeout)
            self._entries.move_to_end((prediction, gold))
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verdict_cache = VerdictCache()


def verify_answer(prediction: str | None, gold: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Verdict:
    """Is `prediction` (an extracted answer, e.g. from `extract_boxed`) equal to `gold`? (ALGORITHMS.md §1)

    `quick_verdict` settles what it can; a pair math-verify has judged before comes from `verdict_cache`;
    otherwise math-verify decides in the worker process, and an answer it cannot settle within `timeout`
    seconds is TIMEOUT (callers score it wrong). One answer at a time: a batch goes to `verify_batch`
    (`frugalrl.rewards.pool`), which checks in parallel under one deadline.
    """
    gold = str(gold)  # dataset columns can arrive as int or float
    quick = quick_verdict(prediction, gold)
    if quick is not None:
        return quick
    cached = verdict_cache.get(prediction, gold, timeout)
    if cached is not None:
        note(cache_hits=1, verify_timeouts=int(cached is Verdict.TIMEOUT))
        return cached
    verdict = default_worker().verify(prediction, gold, timeout=timeout)
    verdict_cache.put(prediction, gold, verdict, timeout)
    note(verify_timeouts=int(verdict is Verdict.TIMEOUT))
    return verdict


def is_correct(prediction: str | None, gold: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    """`verify_answer(...) is Verdict.CORRECT`; a timeout counts as not correct."""
    return verify_answer(prediction, gold, timeout=timeout) is Verdict.CORRECT
