"""Parse clip boundaries written as seconds, frame numbers or timestamps.

Accepted forms (see ``docs/annotations.md``):
- a number: seconds, or a frame number when the unit is ``frames`` (needs an fps);
- ``HH:MM:SS.ff`` / ``MM:SS.ff`` / ``SS.ff``: hours, minutes, seconds with a decimal fraction;
- ``HH:MM:SS:FF`` (SMPTE, ``;`` for drop-frame also accepted): the last part is a frame number
  within the second, so it needs an fps.
"""

from __future__ import annotations

import math
import re

_HMS = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")
_SMPTE = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2})[:;](\d{1,3})$")

UNITS = ("auto", "seconds", "frames", "timestamp")


class TimeParseError(ValueError):
    """A boundary value could not be read; the message says why."""


def parse_time(value: object, unit: str = "seconds", fps: float | None = None) -> float:
    """Return the boundary in seconds (NaN and negative values are returned as-is)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise TimeParseError("empty time value")
    if isinstance(value, bool):
        raise TimeParseError(f"{value!r} is not a time")
    if isinstance(value, int | float):
        return _number(float(value), unit, fps)
    text = str(value).strip()
    try:
        return _number(float(text), unit, fps)
    except ValueError:
        pass
    match = _SMPTE.match(text)
    if match:
        hours, minutes, seconds, frames = (int(g) for g in match.groups())
        _check_ranges(text, minutes, seconds)
        if not fps:
            raise TimeParseError(f"timecode {text!r} counts frames and needs an fps")
        if frames >= math.ceil(fps):
            raise TimeParseError(f"timecode {text!r} has frame {frames} but fps is {fps:g}")
        return hours * 3600 + minutes * 60 + seconds + frames / fps
    match = _HMS.match(text)
    if match:
        hours = int(match.group(1) or 0)
        minutes = int(match.group(2))
        seconds = float(match.group(3))
        _check_ranges(text, minutes, seconds)
        return hours * 3600 + minutes * 60 + seconds
    raise TimeParseError(f"{text!r} is not seconds, a frame number or HH:MM:SS.ff")


def _number(number: float, unit: str, fps: float | None) -> float:
    if unit == "frames":
        if not fps:
            raise TimeParseError("frame numbers need an fps (add an fps column or setting)")
        return number / fps
    return number


def _check_ranges(text: str, minutes: int, seconds: float) -> None:
    if minutes >= 60 or seconds >= 60:
        raise TimeParseError(f"{text!r} has minutes or seconds of 60 or more")
