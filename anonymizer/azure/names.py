"""Blob names the function may read from and write to.

A blob name is a path the service resolves: a `..` segment in a destination name (even written
as `%2E%2E` in the source's name, which the service stores decoded) would climb out of the
destination container into another one. Every source name and every destination name (prefix
included) is checked here before anything is read or written.
"""

from __future__ import annotations

from urllib.parse import unquote


class UnsafeName(Exception):
    """A blob name the function refuses to use (reported as `unsafe_name`, nothing written).
    The message says what is wrong with it, never the name."""


def _decodings(name: str) -> list[str]:
    """The name as stored and as percent-decoding (repeated: `%252E` is `%2E` is `.`) reads it."""
    found = [name]
    for _ in range(3):
        decoded = unquote(found[-1])
        if decoded == found[-1]:
            break
        found.append(decoded)
    return found


def unsafe_reason(name: str) -> str | None:
    """Why a blob name is unsafe (an empty, `.` or `..` segment, a backslash, a control
    character), or None."""
    if not name:
        return "it is empty"
    for text in _decodings(name):
        if "\\" in text:
            return "it holds a backslash"
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            return "it holds a control character"
        for segment in text.split("/"):
            if segment == "":
                return "it has an empty path segment (a leading, doubled or trailing '/')"
            if segment in (".", ".."):
                return f"it has a '{segment}' path segment"
    return None


def check_name(name: str, what: str) -> str:
    reason = unsafe_reason(name)
    if reason is not None:
        raise UnsafeName(f"the {what} blob name is refused: {reason}")
    return name


def check_prefix(prefix: str) -> str:
    """A destination prefix: empty, or path segments that are safe once a name follows them."""
    if prefix:
        check_name(prefix + "x", "ANONYMIZER_DESTINATION_PREFIX")
    return prefix
