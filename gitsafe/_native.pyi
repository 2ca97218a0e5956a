# Types of the optional C extension built from _native.c (see gitsafe/accel.py).

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
