"""Building what lasts as long as the process (an SDK's modules, a client and its service model) at a cold start.

    with coldstart.lasting():
        import cloudinary, cloudinary.uploader

Python's cyclic garbage collector runs after every ~700 net allocations. Importing an SDK creates tens of
thousands of objects (botocore: ~40,000) that are never garbage, so the collections the import triggers find
nothing: measured on the accepted path of face_tagging, ~120 collections and 35-45 ms of a cold start
(bench/accepted.py). Inside ``lasting()`` the collector is paused; at the end, everything alive is moved to
the permanent generation (``gc.freeze``), so no later collection walks those objects again, nor does the
interpreter's teardown (70+ ms for botocore's objects). Nothing is freed any later for it: live objects are
live either way, and freezing only stops the collector from searching them for reference cycles.

``settled()``, called as each request starts, freezes once what the cold start built before the first request
(the function's module, shared/, the standard library's modules): it too lives as long as the process.

``first_import(name)`` is the usual way in: ``lasting()`` around the imports of a module's first use, nothing
once it is loaded (a warm request freezes nothing of its own).

The collector is paused for every thread, and the freeze takes every thread's objects: cyclic garbage another
thread makes during a block (a concurrent request on a threaded server) is kept for good. Each block runs once
per process at most (a first use), so that is bounded; running a full collection first instead would cost ~20 ms
of each cold start.

Standard library only (``gc``, ``sys`` and ``threading``, all loaded at start-up).
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

_lock = threading.Lock()
_depth = 0  # nested or concurrent blocks: the collector resumes when the last one ends
_resume = False  # whether the collector was running when the first block began
_failed = False  # whether a block among those running raised: then nothing is frozen at the end


@contextmanager
def lasting() -> Iterator[None]:
    """Pause the collector for the block, then freeze what it built (see the module docstring). A block that
    raises freezes nothing: what it left half built is garbage, and the next request builds it again (frozen at
    every failing request, a client that can never be built grew the process ~10 MiB a request)."""
    global _depth, _resume, _failed
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        with _lock:
            _failed = _failed or failed
            _depth -= 1
            if _depth == 0:
                if not _failed:
                    gc.freeze()
                _failed = False
                if _resume:
                    gc.enable()


def first_import(name: str) -> AbstractContextManager[None]:
    """``lasting()`` while module ``name`` is not loaded yet (the block imports it, at a cold start), else a
    block that does nothing: what a warm request builds is its own, and must stay collectable."""
    return lasting() if name not in sys.modules else nullcontext()


_settled = False


def settled() -> None:
    """At the first request, freeze what the process has built so far: the function's module and all it imported,
    which live as long as the process. Later requests do nothing here. (Callgrind, a process importing eager_email's
    handler and answering one request that needs no SDK: 169 million instructions, 157 million with this freeze.
    A request that imports an SDK gets as much from that import's ``lasting()``.)"""
    global _settled
    if not _settled:
        _settled = True
        gc.freeze()
