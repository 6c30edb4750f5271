"""Types of the compiled core (core/src/lib.rs), built from core/ where Rust is found."""

from typing import Any

__version__: str
MAX_DEPTH: int

Result = tuple[bytes, list[tuple[int, str, Any, int, int]], dict[str, Any]]

class Plan:
    def __init__(self, resource_types: list[str], params: dict[str, Any]) -> None: ...
    def add(
        self, nodes: list[int], slots: list[tuple], roots: list[tuple], claims: list[tuple[int, str, int]]
    ) -> None: ...
    def size(self) -> tuple[int, int, int]: ...

class Session:
    def __init__(self) -> None: ...

class Ticket:
    def wait(self) -> Result: ...

def process(
    plan: Plan,
    sessions: list[Session],
    pieces: list[tuple[bytes, int, int]],
    file: str = "",
    folder: str = "",
    *,
    max_line_bytes: int = ...,
    stop_at_event: bool = False,
    stop_at_missing: bool = True,
    threads: int = 1,
) -> list[Result]: ...
def submit(
    plan: Plan,
    session: Session,
    data: bytes,
    start: int,
    end: int,
    file: str = "",
    folder: str = "",
    *,
    max_line_bytes: int = ...,
    stop_at_event: bool = False,
    threads: int = 1,
) -> Ticket: ...
def decimal_text(text: str) -> str: ...
