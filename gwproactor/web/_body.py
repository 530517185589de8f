"""Strict reading of a ``POST /events`` body: JSON only, bounded nesting, 64-bit integers, finite numbers.

:func:`read_json` never lets a :class:`RecursionError` out: the nesting depth is counted on the bytes before
the decoder runs (:func:`nesting_depth`), so the decoder never recurses deeper than the limit.  Integers and
floats go through decoder hooks, so a number the store's encoder would refuse (orjson refuses integers outside
``[-2**63, 2**64 - 1]``) or silently change (``NaN``, ``Infinity``, ``1e400`` stored as ``null``) is refused
while decoding.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, NoReturn

from gwproactor.errors import DecodeError

#: Default bound of the nesting of arrays and objects in a body (the event object itself is level 1).
MAX_JSON_DEPTH = 64
#: The integers a body may hold: what a signed or unsigned 64-bit integer holds (and orjson encodes).
INT_MIN, INT_MAX = -(2**63), 2**64 - 1

#: The reasons a body is refused (keys of the ``rejected`` counters) and their HTTP status.
REASONS: dict[str, int] = {
    "not_utf8": 400,
    "not_json": 400,
    "too_deep": 422,
    "big_integer": 422,
    "not_finite": 422,
    "not_an_object": 422,
    "invalid_event": 422,
    "unencodable": 422,
}


class BodyRefused(DecodeError):
    """A ``POST /events`` body the endpoint refuses: ``reason`` is a key of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = REASONS[reason]


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def nesting_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in the JSON text ``body``, counted without decoding it.

    Brackets inside strings do not count.  For text that is not JSON the count is exact up to the first
    unterminated string, which is as far as a decoder gets.  Linear in ``len(body)``.
    """
    # Escapes first (each is two bytes, so no escaped quote survives), then whole strings.
    text = _STRING.sub(b"", _ESCAPE.sub(b"", body)).split(b'"', 1)[0]
    structure = text.translate(None, _NOT_BRACKETS)
    return max(0, max(accumulate(map(_STEP.__getitem__, structure)), default=0))


def _refuse(reason: str, message: str) -> NoReturn:
    raise BodyRefused(reason, message)


def _parse_int(text: str) -> int:
    if len(text) - text.startswith("-") > 20:  # longer than 2**64: refuse before int() does the work
        shown = text if len(text) <= 40 else f"{text[:24]}... ({len(text)} digits)"
        _refuse("big_integer", f"integer {shown} is beyond 64 bits")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        _refuse("big_integer", f"integer {text} is beyond 64 bits (allowed: {INT_MIN} to {INT_MAX})")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _refuse("not_finite", f"number {text[:40]} is too large for a double")
    return value


def _parse_constant(name: str) -> NoReturn:
    _refuse("not_finite", f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)


def read_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value in ``body``; raises :class:`BodyRefused` with the reason and a message that says what to fix."""
    # Fewer brackets than the limit cannot nest deeper than it: most bodies skip the count.
    if body.count(b"[") + body.count(b"{") > max_depth and (depth := nesting_depth(body)) > max_depth:
        _refuse("too_deep", f"body nests arrays/objects {depth} levels deep; at most {max_depth} are allowed")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        _refuse("not_utf8", f"body is not UTF-8: {e}")
    if not text.strip():
        _refuse("not_json", "body is empty; send one JSON object (an event)")
    try:
        return _DECODER.decode(text)
    except ValueError as e:
        _refuse("not_json", f"body is not JSON: {e}")
    except RecursionError:  # not reachable with the depth bound above; never let it out
        _refuse("too_deep", f"body nests arrays/objects too deeply; at most {max_depth} levels are allowed")
