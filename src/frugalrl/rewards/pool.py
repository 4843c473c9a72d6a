"""A batch's math-verify checks in parallel worker processes, under one deadline for the whole batch.

`verify_batch(predictions, golds, timeout=3.0)` returns one `Verdict` per pair. What it costs, at most:

  * the pure-string work of `quick_verdict` (linear, bounded by the answer-length cap), and
  * `batch_timeout` seconds (default 1.5 × `timeout`) for everything math-verify must decide, however many
    pairs there are and however hostile they are, plus one worker start-up if no worker is running yet.

How: identical pairs are checked once; pairs math-verify judged before come from `verdict_cache`; the rest
are queued for a pool of worker processes (the same child as `MathVerifyWorker`), each answer with its own
`timeout`. When the batch deadline comes, an answer still queued or in flight is TIMEOUT (scored wrong,
counted in `RewardStats.verify_timeouts`), and a worker still busy is killed and restarted in the
background, so the next batch finds it ready. A worker that does not answer within its answer's timeout
plus `KILL_GRACE_S` is killed too (sympy can sit in C code where no signal is seen).

Worker start-up (importing sympy, a second or more) is not part of the deadline: the clock starts once a
worker is ready. The pool is single-threaded (it polls the workers' pipes), thread-safe by a lock, and
after os.fork() a child process starts its own workers rather than use the parent's.
"""

from __future__ import annotations

import json
import math
import os
import select
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from subprocess import Popen

from frugalrl.rewards import verify as _verify
from frugalrl.rewards.stats import note
from frugalrl.rewards.verify import DEFAULT_TIMEOUT_S, Verdict, quick_verdict, verdict_cache

# The share of the per-answer timeout a whole batch may take: the batch then ends within 2x the timeout
# with room for the string work and the pipes.
BATCH_TIMEOUT_FACTOR = 1.5
# The first try each pair gets: half the workers' time per pair, between these bounds (and at most the
# per-answer timeout). math-verify settles ordinary answers in tens of milliseconds; slower ones are tried
# again with the rest of their timeout once every pair of the batch has had its first try. A batch of many
# hostile answers can still leave an ordinary one untried at the deadline (scored wrong, counted).
FIRST_TRY_S = 0.5
MIN_FIRST_TRY_S = 0.05
# A worker is given this much less than the batch's remaining time, so that its own "timeout" reply
# arrives before the deadline instead of the worker being killed at it.
_REPLY_MARGIN_S = 0.05


def default_pool_size() -> int:
    """Workers of the shared pool: one per core, at most 4 (each holds sympy, ~100 MB)."""
    return max(1, min(4, os.cpu_count() or 1))


@dataclass
class _Slot:
    """One worker process and what it is doing: starting (not ready), idle, or checking pair `job`."""

    proc: Popen
    finalizer: weakref.finalize
    ready: bool = False
    job: int | None = None
    give_up_at: float = math.inf  # monotonic time after which the job's worker is killed
    buffer: bytes = b""

    @property
    def fd(self) -> int:
        return self.proc.stdout.fileno()


class VerifierPool:
    """`size` math-verify worker processes checking the pairs of a batch in parallel; see the module doc."""

    def __init__(self, size: int | None = None, *, startup_timeout: float = _verify.STARTUP_TIMEOUT_S) -> None:
        self.size = size or default_pool_size()
        if self.size < 1:
            raise ValueError(f"a verifier pool needs at least one worker, got size={size}")
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._owner_pid = os.getpid()
        _pools.add(self)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running workers (ready or starting)."""
        return [s.proc.pid for s in self._slots if s.proc.poll() is None]

    @property
    def ready(self) -> bool:
        """Every worker is running and has imported math-verify: a batch now waits for no start-up."""
        return len(self._slots) == self.size and all(s.ready and s.proc.poll() is None for s in self._slots)

    def spawn(self) -> None:
        """Start the missing workers without waiting for them (`start` waits): they import sympy in the
        background, e.g. while the trainer loads its model."""
        with self._lock:
            self._spawn_missing()

    def start(self) -> None:
        """Start every worker and wait until all are ready (otherwise the first batch waits for one)."""
        with self._lock:
            self._spawn_missing()
            deadline = time.monotonic() + self.startup_timeout
            while not all(s.ready for s in self._slots) and time.monotonic() < deadline:
                self._pump(deadline)
            if not any(s.ready for s in self._slots):
                self._fail_startup()

    def close(self) -> None:
        """Stop every worker. The pool stays usable: the next batch starts new ones."""
        with self._lock:
            self._close_slots()

    def check(
        self, pairs: Sequence[tuple[str, str]], *, timeout: float, batch_timeout: float
    ) -> list[tuple[Verdict, float]]:
        """math-verify's verdict on each (prediction, gold) pair, and the seconds it was given: TIMEOUT for
        a pair not settled within `timeout` seconds of its own or `batch_timeout` seconds of the batch
        (module doc); 0.0 seconds for one the batch deadline cut off before it could use its time."""
        for name, value in (("timeout", timeout), ("batch_timeout", batch_timeout)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
        if not pairs:
            return []
        with self._lock:
            self._spawn_missing()
            self._await_one_ready()
            return self._run(pairs, timeout, time.monotonic() + batch_timeout)

    # --- internals; callers hold self._lock ---

    def _run(self, pairs: Sequence[tuple[str, str]], timeout: float, deadline: float) -> list[tuple[Verdict, float]]:
        verdicts: list[Verdict | None] = [None] * len(pairs)
        given = [0.0] * len(pairs)  # seconds each pair was given, over its tries (0: never sent)
        # Two rounds: every pair first gets a short try, so a few hostile answers cannot hold every worker
        # while ordinary ones wait in the queue past the deadline; what timed out then gets what is left.
        # Shortest answers first: ordinary answers are short, and most hostile ones are long.
        queue = deque(sorted(range(len(pairs)), key=lambda j: len(pairs[j][0])))
        # The first try is a fair share of the workers' time, so that every pair can have one.
        share = len(self._slots) * (deadline - time.monotonic()) / (2 * len(pairs))
        first_try = min(timeout, FIRST_TRY_S, max(MIN_FIRST_TRY_S, share))
        while True:
            now = time.monotonic()
            for slot in self._slots:
                if slot.job is not None and now >= slot.give_up_at:
                    verdicts[slot.job] = Verdict.TIMEOUT  # stuck where its own alarm is not seen
                    self._kill(slot)
            self._respawn_dead()
            budget = deadline - now - _REPLY_MARGIN_S
            for slot in self._slots:
                if queue and slot.ready and slot.job is None and budget > 0:
                    job = queue.popleft()
                    allowed = min(first_try if given[job] == 0 else timeout - given[job], budget)
                    if self._send(slot, job, pairs[job], allowed, deadline):
                        given[job] += allowed
                    else:
                        queue.appendleft(job)  # that worker died since its last answer; another takes it
            busy = [slot for slot in self._slots if slot.job is not None]
            if now >= deadline or not (busy or queue):
                break
            for job, verdict in self._pump(min([deadline] + [slot.give_up_at for slot in busy])):
                if verdict is Verdict.TIMEOUT and given[job] < timeout:
                    queue.append(job)  # its short first try: it goes again once every pair had one
                else:
                    verdicts[job] = verdict
        for slot in self._slots:
            if slot.job is not None:  # past the batch deadline: TIMEOUT, and the worker starts afresh
                self._kill(slot)
        for job in range(len(pairs)):
            if verdicts[job] is None and given[job] < timeout:
                given[job] = 0.0  # cut short by the batch deadline: not a verdict on the answer itself
        self._respawn_dead()
        return [(Verdict.TIMEOUT if v is None else v, g) for v, g in zip(verdicts, given, strict=True)]

    def _send(self, slot: _Slot, job: int, pair: tuple[str, str], timeout: float, deadline: float) -> bool:
        request = (json.dumps({"pred": pair[0], "gold": pair[1], "timeout": timeout}) + "\n").encode()
        try:
            _write_all(slot.proc.stdin.fileno(), request)
        except OSError:
            self._kill(slot)
            return False
        slot.job = job
        slot.give_up_at = min(deadline, time.monotonic() + timeout + _verify.KILL_GRACE_S)
        return True

    def _pump(self, until: float) -> list[tuple[int, Verdict]]:
        """Wait (at most until `until`) for output from any worker; returns the verdicts that arrived.
        Marks workers that became ready; a worker whose pipe closed is removed (its job, if any, TIMEOUT)."""
        poller = select.poll()  # not select.select: a training process can hold fds past its 1024 limit
        by_fd = {slot.fd: slot for slot in self._slots}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        remaining = until - time.monotonic()
        arrived: list[tuple[int, Verdict]] = []
        if remaining <= 0:
            return arrived
        for fd, _ in poller.poll(math.ceil(remaining * 1000)):
            slot = by_fd[fd]
            chunk = os.read(fd, 65536)
            if not chunk:  # crashed (segfault, the memory cap) or was killed
                if slot.job is not None:
                    arrived.append((slot.job, Verdict.TIMEOUT))
                self._kill(slot)
                continue
            slot.buffer += chunk
            while b"\n" in slot.buffer:
                line, slot.buffer = slot.buffer.split(b"\n", 1)
                message = json.loads(line)
                if message.get("ready"):
                    slot.ready = True
                elif slot.job is not None:
                    arrived.append((slot.job, Verdict(message["verdict"])))
                    slot.job, slot.give_up_at = None, math.inf
        return arrived

    def _await_one_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not any(s.ready for s in self._slots):
            if time.monotonic() >= deadline or not self._slots:
                self._fail_startup()
            self._pump(deadline)
            self._respawn_dead()

    def _fail_startup(self) -> None:
        codes = [s.proc.poll() for s in self._slots]
        self._close_slots()
        raise RuntimeError(_verify.startup_failure(self.startup_timeout, next((c for c in codes if c), None)))

    def _close_slots(self) -> None:
        for slot in self._slots:
            slot.finalizer()
        self._slots = []

    def _spawn_missing(self) -> None:
        self._respawn_dead()
        while len(self._slots) < self.size:
            proc = _verify.spawn_worker_process()
            finalizer = weakref.finalize(self, _verify._stop_process, proc, self._owner_pid)
            self._slots.append(_Slot(proc=proc, finalizer=finalizer))

    def _respawn_dead(self) -> None:
        """Replace killed or crashed workers (without waiting for them to be ready)."""
        alive = [s for s in self._slots if s.proc.poll() is None]
        if len(alive) == len(self._slots):
            return
        for slot in self._slots:
            if slot not in alive:
                slot.finalizer()
        self._slots = alive
        self._spawn_missing()

    def _kill(self, slot: _Slot) -> None:
        slot.proc.kill()
        slot.proc.wait()
        slot.job, slot.give_up_at, slot.ready = None, math.inf, False

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's workers without stopping them (see MathVerifyWorker)."""
        self._lock = threading.Lock()
        for slot in self._slots:
            slot.finalizer.detach()
            for pipe in (slot.proc.stdin, slot.proc.stdout):
                pipe.close()
        self._slots, self._owner_pid = [], os.getpid()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


_pools: weakref.WeakSet[VerifierPool] = weakref.WeakSet()
_default_pool: VerifierPool | None = None
_default_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for pool in list(_pools):
        pool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def default_pool() -> VerifierPool:
    """The process-wide pool used by `verify_batch` (created on first use, stopped at exit)."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = VerifierPool()
        return _default_pool


def verify_batch(
    predictions: Sequence[object],
    golds: Sequence[object],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    batch_timeout: float | None = None,
    pool: VerifierPool | None = None,
) -> list[Verdict]:
    """`verify_answer` for a whole batch, in bounded time: see the module docstring.

    `predictions[i]` is an extracted answer (None, or anything not a string, is WRONG); `golds[i]` its gold
    answer (converted with str). `batch_timeout` defaults to `BATCH_TIMEOUT_FACTOR` × `timeout`. Counts
    TIMEOUT verdicts and cache hits into any open `record_reward_stats()`.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"got {len(predictions)} predictions but {len(golds)} gold answers")
    batch_timeout = BATCH_TIMEOUT_FACTOR * timeout if batch_timeout is None else batch_timeout
    verdicts: list[Verdict | None] = [None] * len(predictions)
    waiting: dict[tuple[str, str], list[int]] = {}  # identical pairs are checked once
    hits = 0
    for i, (prediction, gold) in enumerate(zip(predictions, golds, strict=True)):
        gold = str(gold)
        verdicts[i] = quick_verdict(prediction, gold)
        if verdicts[i] is None:
            verdicts[i] = verdict_cache.get(prediction, gold, timeout)
            hits += verdicts[i] is not None
        if verdicts[i] is None:
            waiting.setdefault((prediction, gold), []).append(i)
    if waiting:
        pairs = list(waiting)
        checked = (pool or default_pool()).check(pairs, timeout=timeout, batch_timeout=batch_timeout)
        for pair, (verdict, given) in zip(pairs, checked, strict=True):
            if given > 0:  # a pair the batch deadline cut off gets its full chance next time: not cached
                verdict_cache.put(*pair, verdict, given)
            for i in waiting[pair]:
                verdicts[i] = verdict
    note(cache_hits=hits, verify_timeouts=sum(v is Verdict.TIMEOUT for v in verdicts))
    return verdicts  # type: ignore[return-value] - every entry is set above
