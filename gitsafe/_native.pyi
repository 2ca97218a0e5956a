# Types of the optional C extension built from _native.c (see gitsafe/accel.py).

from collections.abc import Container, Iterable, Iterator, Mapping
from typing import overload

_Key = tuple[int, int, int, int, int, int]
_Stat = tuple[int, int, int, int, int, int, int, int, int]

RECORD_SIZE: int  # bytes of one stat_pass record: uint32 entry index, 40 packed stat bytes

class Table(Mapping[str, tuple[int, bytes, _Key]]):
    """The index's stage-0 entries, as a read-only mapping without a Python object each."""

    def __getitem__(self, path: str, /) -> tuple[int, bytes, _Key]: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...

_Entries = dict[str, tuple[int, bytes, _Key]] | Table
_Parsed = tuple[Table, list[tuple[str, int, bytes, int, _Stat]], list[str], bool, int]

def parse_index(data: bytes, /) -> _Parsed | None: ...
@overload
def stat_pass(
    entries: Table,
    near: set[str] | frozenset[str] | None,
    root: str,
    index_mtime_ns: int,
    filemode: bool,
    threads: int,
    /,
) -> tuple[list[str], bytes]: ...
@overload
def stat_pass(
    entries: dict[str, tuple[int, bytes, _Key]],
    near: set[str] | frozenset[str] | None,
    root: str,
    index_mtime_ns: int,
    filemode: bool,
    threads: int,
    /,
) -> tuple[list[str], list[tuple[str, bytes]]]: ...
@overload
def stat_pass(
    entries: _Entries,
    near: set[str] | frozenset[str] | None,
    root: str,
    index_mtime_ns: int,
    filemode: bool,
    threads: int,
    /,
) -> tuple[list[str], bytes | list[tuple[str, bytes]]]: ...
def record_pairs(table: Table, records: bytes, /) -> list[tuple[str, bytes]]: ...
def records_split(
    table: Table, records: bytes, drop: Container[str], /
) -> tuple[bytes, list[str]]: ...
def path_records(table: Table, pairs: Iterable[tuple[str, bytes]], /) -> bytes: ...
def patch_stat(data: bytearray, table: Table, records: bytes, /) -> None: ...
def tree_facts(paths: Iterable[str], /) -> tuple[set[str], list[str]]: ...
def dir_sizes(table: Table, /) -> dict[str, int]: ...
def with_mode(entries: _Entries, mode: int, /) -> list[str]: ...
def dirs_holding_others(
    root: str, tracked: Container[str], tracked_dirs: set[str], /
) -> list[str]: ...
def table_dirs_holding_others(root: str, table: Table, threads: int, /) -> list[str]: ...
def prescan(
    fd: int,
    size: int,
    mtime_ns: int,
    ctime_ns: int,
    root: str,
    filemode: bool,
    threads: int,
    /,
) -> tuple[bytes, _Parsed, list[str], bytes, list[str] | None] | None: ...
