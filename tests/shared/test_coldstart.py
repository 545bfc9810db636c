"""shared.coldstart.lasting: the collector paused while an SDK is built, resumed (as it was) after, and what was
built frozen; nested and concurrent blocks resume it once, at the end of the last."""

from __future__ import annotations

import gc
import threading

import pytest

from shared import coldstart


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    calls: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append(gc.isenabled()))
    yield calls
    gc.enable()


def test_the_collector_is_paused_inside_and_resumed_after_the_freeze(frozen):
    gc.enable()
    with coldstart.lasting():
        assert not gc.isenabled()
        assert frozen == []
    assert gc.isenabled() and frozen == [False]  # frozen before the collector runs again


def test_nested_blocks_resume_once_at_the_end_of_the_outer_one(frozen):
    gc.enable()
    with coldstart.lasting():
        with coldstart.lasting():
            pass
        assert not gc.isenabled() and frozen == []
    assert gc.isenabled() and frozen == [False]


def test_a_collector_that_was_off_stays_off(frozen):
    gc.disable()
    with coldstart.lasting():
        pass
    assert not gc.isenabled() and frozen == [False]


def test_an_error_inside_still_resumes_the_collector(frozen):
    gc.enable()
    with pytest.raises(ValueError), coldstart.lasting():
        raise ValueError("an SDK that failed to import")
    assert gc.isenabled()


def test_concurrent_blocks_in_two_threads_resume_when_both_ended(frozen):
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with coldstart.lasting():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(5)
    with coldstart.lasting():
        pass
    assert not gc.isenabled()  # the other thread's block is still open
    release.set()
    thread.join(5)
    assert gc.isenabled() and frozen == [False]
