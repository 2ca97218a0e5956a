# Types of the optional C extension built from _native.c (see gitsafe/accel.py).

from collections.abc import Container, Iterable

_Key = tuple[int, int, int, int, int, int]
_Stat = tuple[int, int, int, int, int, int, int, int, int]

def parse_index(
    data: bytes, /
) -> (
    tuple[
        dict[str, tuple[int, bytes, _Key]],
        list[tuple[str, int, bytes, int, _Stat]],
        list[str],
        bool,
        int,
    ]
    | None
): ...
def stat_pass(
    entries: dict[str, tuple[int, bytes, _Key]],
    near: set[str] | frozenset[str] | None,
    root: str,
    index_mtime_ns: int,
    filemode: bool,
    threads: int,
    /,
) -> tuple[list[str], list[tuple[str, bytes]]]: ...
def tree_facts(paths: Iterable[str], /) -> tuple[set[str], list[str]]: ...
def with_mode(entries: dict[str, tuple[int, bytes, _Key]], mode: int, /) -> list[str]: ...
def dirs_holding_others(
    root: str, tracked: Container[str], tracked_dirs: set[str], /
) -> list[str]: ...
