"""Records behave as the dataclasses they replace, for everything gitsafe asks of them.

Each case is checked against ``dataclasses.dataclass`` on the same declaration, so the two
cannot drift apart unnoticed: construction (positional, keyword, defaults, factories), the
errors for a missing, unknown or repeated argument, ``repr``, equality, hashing and the
refusal to assign to a frozen instance.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any, Generic, TypeVar

import pytest

from gitsafe import records
from gitsafe.records import FrozenInstanceError, field, record

T = TypeVar("T")


def _both(frozen: bool) -> tuple[type[Any], type[Any]]:
    """The same declaration as a record and as a dataclass."""

    def declare(decorate: Any, make_field: Any) -> type[Any]:
        class Point:
            """A point."""

            x: int
            y: str
            tags: list[str] = make_field(default_factory=list)
            label: str | None = None
            hidden: int = make_field(default=7, compare=False, repr=False)

            def norm(self) -> int:
                return self.x * 2

        return decorate(frozen=frozen)(Point)  # type: ignore[no-any-return]

    return declare(record, field), declare(dataclasses.dataclass, dataclasses.field)


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1, "a"), {}),
    ((1,), {"y": "a"}),
    ((), {"x": 1, "y": "a", "label": "l"}),
    ((1, "a", ["t"], "l", 9), {}),
    ((1, "a"), {"hidden": 3, "tags": ["u"]}),
    ((), {"hidden": 3, "label": "l", "y": "a", "x": 1}),
]

BAD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),  # missing x and y
    ((1,), {}),  # missing y
    ((1, "a", [], None, 0, "extra"), {}),  # too many positional
    ((1, "a"), {"nope": 1}),  # unknown keyword
    ((1, "a"), {"x": 2}),  # x twice
    ((1, "a", [], None, 0), {"x": 2}),  # every field given, and x again
    ((1, "a", [], None, 0), {"nope": 2}),  # every field given, and an unknown one
]


@pytest.mark.parametrize("frozen", [False, True])
@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_a_record_is_built_as_the_dataclass_would_be(
    frozen: bool, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    rec_cls, dc_cls = _both(frozen)
    rec, dc = rec_cls(*args, **kwargs), dc_cls(*args, **kwargs)
    names = [f.name for f in dataclasses.fields(dc)]
    assert [getattr(rec, n) for n in names] == [getattr(dc, n) for n in names]
    assert list(vars(rec).items()) == list(vars(dc).items())  # field order, however called
    assert repr(rec) == repr(dc)
    assert rec == rec_cls(*args, **kwargs)
    assert rec.norm() == dc.norm()
    assert rec_cls.__match_args__ == dc_cls.__match_args__
    # a factory makes a fresh value for every instance
    assert rec_cls(1, "a").tags is not rec_cls(1, "a").tags


@pytest.mark.parametrize(("args", "kwargs"), BAD_CALLS)
def test_a_bad_call_is_refused_as_the_dataclass_refuses_it(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    rec_cls, dc_cls = _both(False)
    with pytest.raises(TypeError) as dc_error:
        dc_cls(*args, **kwargs)
    with pytest.raises(TypeError) as rec_error:
        rec_cls(*args, **kwargs)
    # the same words: only the class's name differs
    dc_words = str(dc_error.value).split("__init__()")[1]
    rec_words = str(rec_error.value).split("__init__()")[1]
    assert rec_words == dc_words


@pytest.mark.parametrize("frozen", [False, True])
def test_equality_and_hashing_follow_the_dataclass(frozen: bool) -> None:
    rec_cls, dc_cls = _both(frozen)
    for cls in (rec_cls, dc_cls):
        # tags: a tuple, as a frozen (hashable) record's fields are
        a, b = cls(1, "a", (), hidden=1), cls(1, "a", (), hidden=2)
        assert a == b  # hidden is left out of the comparison
        assert a != cls(2, "a", ())
        assert a != (1, "a")
        if frozen:
            assert hash(a) == hash(b)
            assert len({a, b, cls(2, "a", ())}) == 2
        else:
            with pytest.raises(TypeError):
                hash(a)
    # a record never equals a dataclass instance with the same values
    assert rec_cls(1, "a") != dc_cls(1, "a")


def test_a_frozen_record_refuses_assignment_and_deletion() -> None:
    rec_cls, _ = _both(True)
    rec = rec_cls(1, "a")
    with pytest.raises(FrozenInstanceError):
        rec.x = 2
    with pytest.raises(FrozenInstanceError):
        rec.other = 2
    with pytest.raises(FrozenInstanceError):
        del rec.x
    assert isinstance(FrozenInstanceError("x"), AttributeError)
    assert rec.x == 1
    mutable = _both(False)[0](1, "a")
    mutable.x = 5
    assert mutable.x == 5


@pytest.mark.parametrize("frozen", [False, True])
def test_a_record_copies_and_pickles(frozen: bool) -> None:
    rec_cls, _ = _both(frozen)
    globals()["Point"] = rec_cls  # pickle finds classes by module and name
    rec_cls.__qualname__ = "Point"
    try:
        rec = rec_cls(1, "a", ["t"])
        assert copy.copy(rec) == rec and copy.deepcopy(rec) == rec
        assert pickle.loads(pickle.dumps(rec)) == rec
    finally:
        del globals()["Point"]


def test_declarations_a_record_cannot_honour_are_refused() -> None:
    with pytest.raises(ValueError, match="mutable default"):

        @record
        class Shared:
            items: list[int] = []  # noqa: RUF012

    with pytest.raises(TypeError, match="no default"):

        @record
        class Order:
            a: int = 0
            b: int  # type: ignore[misc]

    @record
    class Base:
        a: int

    with pytest.raises(TypeError, match="inherit"):

        @record
        class Child(Base):
            b: int

    with pytest.raises(ValueError, match="both"):
        field(default=1, default_factory=int)


def test_the_class_keeps_its_own_methods_and_generic_base() -> None:
    @record(frozen=True)
    class Box(Generic[T]):
        value: T
        source: str

        def __repr__(self) -> str:
            return f"<{self.value} from {self.source}>"

    box: Box[int] = Box(3, "flag")
    assert repr(box) == "<3 from flag>"
    assert Box[int](3, "flag") == box
    assert Box.__init__.__qualname__.endswith("Box.__init__")


def test_gitsafe_modules_on_the_run_path_use_no_dataclasses() -> None:
    """The point of records: a pull or doctor creates no dataclass but the API's Report
    (docs/performance.md); a new ``@dataclass`` on that path would cost about 0.7 ms of start."""
    import subprocess
    import sys

    probe = (
        "import dataclasses, sys\n"
        "made = []\n"
        "orig = dataclasses._process_class\n"
        "def spy(cls, *a, **k):\n"
        "    made.append(cls.__module__ + '.' + cls.__qualname__)\n"
        "    return orig(cls, *a, **k)\n"
        "dataclasses._process_class = spy\n"
        "import gitsafe.core, gitsafe.commands, gitsafe.transport, gitsafe.credentials\n"
        "print(sorted(m for m in made if m.startswith('gitsafe')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['gitsafe.report.Report']"
    assert records.field is field
