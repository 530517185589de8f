"""Unit tests of Problems (one problem event from many errors/warnings) and RateLimiter (Clock-driven)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from gwproactor.errors import DecodeError
from gwproactor.message import Codec, ProblemEvent
from gwproactor.ops.problems import Problems, RateLimiter, describe


def test_empty_problems_is_falsy_and_makes_no_event() -> None:
    """No entries: falsy, no problem type, and problem_event refuses."""
    problems = Problems()
    assert not problems and len(problems) == 0 and problems.problem_type is None
    with pytest.raises(ValueError, match="no problems"):
        problems.problem_event("a.b", "nothing")


def test_warnings_only_make_a_warning_event() -> None:
    """Only warnings: problem_type warning, details list them in order."""
    problems = Problems().add_warning("disk 91% full").add_warning(ValueError("slow"), summary="poll")
    event = problems.problem_event("a.b", "housekeeping")
    assert isinstance(event, ProblemEvent)
    assert event.problem_type == "warning" and event.src == "a.b" and event.summary == "housekeeping"
    assert event.details == "warning: disk 91% full\nwarning: poll: ValueError: slow"


def test_any_error_makes_an_error_event_listing_errors_first() -> None:
    """One error among warnings: problem_type error; errors are listed before warnings."""
    problems = Problems()
    problems.add_warning("w1")
    problems.add_error(DecodeError("Payload.Src: missing field"), summary="frame 3")
    event = problems.problem_event("a.b", "frames rejected", message_id="m-1")
    assert event.problem_type == "error" and event.message_id == "m-1"
    assert event.details.splitlines() == ["error: frame 3: DecodeError: Payload.Src: missing field", "warning: w1"]
    Codec().payload_from_dict(Codec().payload_to_dict(event))  # the event is valid on the wire


def test_failures_are_described_by_type_and_message() -> None:
    """A Failure is described like its exception."""
    try:
        raise KeyError("x")
    except KeyError:
        failure = Failure()
    assert describe(failure) == "KeyError: 'x'"
    assert describe(RuntimeError()) == "RuntimeError"


def test_entries_and_details_are_bounded() -> None:
    """Past max_entries entries are only counted; details never exceed max_details_chars."""
    problems = Problems(max_entries=3, max_details_chars=200)
    for i in range(10):
        problems.add_error("x" * 100 + str(i))
    assert len(problems.errors) == 3 and problems.dropped == 7 and len(problems) == 10
    details = problems.details()
    assert len(details) <= 200
    assert "characters cut" in details


def test_extend_merges_entries() -> None:
    """extend keeps errors as errors and warnings as warnings."""
    a = Problems().add_warning("w")
    a.extend(Problems().add_error("e"))
    assert a.errors == ["e"] and a.warnings == ["w"] and a.problem_type == "error"


def test_rate_limiter_allows_n_per_period_per_key_and_counts_the_rest() -> None:
    """At most N per key per period; suppressed ones are counted and taken once; a new period allows again."""
    clock = Clock()
    limiter = RateLimiter(clock, max_per_period=2, period_s=10.0)
    assert [limiter.allow("bad_frame") for _ in range(5)] == [True, True, False, False, False]
    assert limiter.allow("other") is True
    assert limiter.suppressed("bad_frame") == 3
    clock.advance(9.9)
    assert limiter.allow("bad_frame") is False
    clock.advance(0.1)
    assert limiter.allow("bad_frame") is True
    assert limiter.take_suppressed("bad_frame") == 4
    assert limiter.take_suppressed("bad_frame") == 0
    assert limiter.stats()["allowed"] == 4 and limiter.stats()["suppressed"] == 4


def test_rate_limiter_bounds_its_keys() -> None:
    """Beyond max_keys the oldest window is forgotten."""
    clock = Clock()
    limiter = RateLimiter(clock, max_per_period=1, period_s=60.0, max_keys=2)
    limiter.allow("a")
    clock.advance(1)
    limiter.allow("b")
    clock.advance(1)
    limiter.allow("c")
    assert limiter.stats()["keys"] == 2
    assert limiter.allow("a") is True  # "a" was forgotten, so it starts a new window
