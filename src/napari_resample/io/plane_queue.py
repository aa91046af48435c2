"""The bounded queue between a plane stream and its background thread.

A plane reader's thread decompresses blocks into a queue that the consumer empties; a plane
writer's thread compresses what the producer puts on one. Both sides wait a short time at once
(:data:`POLL`) so that a stop flag is seen promptly, and the end of the stream is one marker
(:data:`END`) put after the last block.

Examples
--------
>>> import queue, threading
>>> box = queue.Queue(maxsize=1)
>>> put_unless_stopped(box, "block", threading.Event())
>>> drain(box)
>>> box.empty()
True
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

#: Seconds a background thread waits on its queue before it looks whether it was stopped.
POLL = 0.05


class Stopped(Exception):
    """Raised inside a background thread told to stop: it ends without reporting."""


class _End:
    """Put on a queue after the last block."""


#: The marker after the last block.
END = _End()


def put_unless_stopped(box: queue.Queue[Any], item: object, stop: threading.Event) -> None:
    """Put *item* on the bounded *box*, waiting for room unless *stop* is set (then Stopped)."""
    while True:
        if stop.is_set():
            raise Stopped
        try:
            box.put(item, timeout=POLL)
            return
        except queue.Full:
            continue


def drain(box: queue.Queue[Any]) -> None:
    """Drop what *box* holds (so that a thread blocked putting into it sees its stop flag)."""
    while True:
        try:
            box.get_nowait()
        except queue.Empty:
            return


def positive_int(name: str, value: object) -> int:
    """*value* as an int, or ValueError naming *name* when it is not a positive integer.

    Examples
    --------
    >>> positive_int("queue_blocks", 0)
    Traceback (most recent call last):
    ...
    ValueError: queue_blocks must be a positive integer, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
