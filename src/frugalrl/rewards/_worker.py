"""The math-verify worker process: reads JSON requests on stdin, writes one JSON verdict per line.

Started by `frugalrl.rewards.verify.MathVerifyWorker`; never imported for its side effects (importing this
module does nothing). Protocol, one line each way per request:

    -> {"pred": "\\\\sqrt{2}/2", "gold": "\\\\frac{\\\\sqrt{2}}{2}", "timeout": 3.0}
    <- {"verdict": "correct"}          # or "wrong", "timeout"

The first line the worker writes is {"ready": true}, once math-verify is imported.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import sys
from typing import Any

# A cap on the worker's address space: `2^{2^{40}}` makes sympy allocate without bound, and a MemoryError in
# here (scored as wrong) is better than the training node's OOM killer picking a victim.
MEMORY_LIMIT_BYTES = 4 * 1024**3


class _Deadline(BaseException):
    """Raised by SIGALRM. A BaseException so that math-verify's `except Exception` does not swallow it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Deadline


@functools.lru_cache(maxsize=4096)
def _parsed(text: str) -> list:
    from math_verify import parse

    # Raw LaTeX such as `\pi` or `(1,2)` parses to nothing unless it sits in math mode (ALGORITHMS.md §1).
    # parsing_timeout=None: math-verify's own alarm would replace ours; the deadline is enforced below.
    return parse(f"${text.strip().strip('$')}$", parsing_timeout=None)


def judge(pred: str, gold: str, timeout: float) -> str:
    """Verdict "correct", "wrong" or "timeout" for one pair; gives up after `timeout` seconds of wall time."""
    from math_verify import verify

    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            ok = verify(_parsed(gold), _parsed(pred), timeout_seconds=None)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        return "timeout"
    except Exception as exc:  # noqa: BLE001 - any failure to compare is a wrong answer, never a crash
        name = type(exc).__name__
        print(f"frugalrl math-verify worker: {name} while verifying; scored wrong", file=sys.stderr)
        return "wrong"
    return "correct" if ok else "wrong"


def _limit_memory() -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard == resource.RLIM_INFINITY or hard > MEMORY_LIMIT_BYTES:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, hard))
    except (ImportError, ValueError, OSError):
        pass  # not every platform lets a process lower its own limit; the parent's kill still bounds time


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def main() -> None:
    # The protocol gets a private copy of stdout; fd 1 then points at stderr, so a stray print() inside
    # sympy or latex2sympy can never corrupt a reply.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Ctrl-C in the terminal reaches the whole process group; the parent decides when we stop (stdin EOF).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, _on_alarm)
    _limit_memory()
    # Silences "Timeout is disabled" warnings: we disable math-verify's alarm on purpose and run our own.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    import math_verify  # noqa: F401 - import before "ready" so the first request does not pay for sympy

    _send(reply_fd, {"ready": True})
    for line in sys.stdin.buffer:  # ends when the parent closes the pipe or exits
        request = json.loads(line)
        _send(reply_fd, {"verdict": judge(request["pred"], request["gold"], float(request["timeout"]))})


if __name__ == "__main__":
    main()
