"""Reading configuration JSON the way the reference's Newtonsoft parser does: a leading BOM,
comments and trailing commas are accepted; duplicate property names are an error."""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"duplicate property {key!r}")
        out[key] = value
    return out


def _blank(text: str) -> str:
    """Spaces in place of the text, its line breaks kept: positions after it stay where they were."""
    return "".join(c if c in "\r\n" else " " for c in text)


def strip_comments_and_trailing_commas(text: str) -> str:
    """Blank out // and /* */ comments and commas that precede } or ], outside strings (blanked,
    not removed: a syntax error's line and column are then those of the text as written)."""
    out: list[str] = []
    i, n = 0, len(text)
    pending_comma: int | None = None  # index in `out` of a comma that may be trailing
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            pending_comma = None
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            end = n if j < 0 else j
            out.append(_blank(text[i:end]))
            i = end
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            end = n if j < 0 else j + 2
            out.append(_blank(text[i:end]))
            i = end
        elif ch in "}]":
            if pending_comma is not None:
                out[pending_comma] = " "
            pending_comma = None
            out.append(ch)
            i += 1
        elif ch == ",":
            pending_comma = len(out)
            out.append(ch)
            i += 1
        else:
            if not ch.isspace():
                pending_comma = None
            out.append(ch)
            i += 1
    return "".join(out)


def loads(text: str) -> Any:
    """Parse lenient JSON text; raises ValueError (json.JSONDecodeError or DuplicateKeyError)."""
    text = text.removeprefix("\ufeff")
    try:  # plain JSON reads the same either way, without the character loop (5 ms on the sample)
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except DuplicateKeyError:
        raise
    except ValueError:
        pass
    return json.loads(strip_comments_and_trailing_commas(text), object_pairs_hook=_no_duplicates)
