"""Record classes: what ``@dataclass`` gives gitsafe's data holders, without its cost at import.

``dataclasses`` writes each class's methods (``__init__``, ``__repr__``, ``__eq__`` and, frozen,
``__setattr__``, ``__delattr__``, ``__hash__``) as source text and compiles them, one ``exec``
each: about 0.7 ms a class on Python 3.11, 16-20 ms of the 0.12 s of CPU that a no-op
``gitsafe pull`` spends on its main thread at 50,000 files (docs/performance.md).  A record's
methods are a handful of shared functions, made per class as closures over its field table;
nothing is compiled, and creating an instance costs about what a dataclass's does
(``__init__`` fills the instance's ``__dict__`` in one call).

What a record keeps of a dataclass: fields declared by annotations in order, defaults and
``field(default_factory=...)``, a keyword-or-positional ``__init__`` that rejects a missing,
unknown or repeated argument as the dataclass's would, ``__repr__`` and ``__eq__`` over the
fields (``field(compare=False, repr=False)`` leaves one out), ``__match_args__``, and with
``frozen=True`` no assignment after ``__init__`` and a ``__hash__``.  Type checkers read records as
dataclasses (:func:`typing.dataclass_transform`).  What it leaves out, because no record needs it:
inheriting fields, ``__post_init__``, ``ClassVar`` and ``InitVar``, ordering, slots, and
``dataclasses.fields``/``asdict``/``replace``.  :class:`gitsafe.report.Report`, the Python API's
return value, stays a dataclass: callers may hand it to ``dataclasses.asdict``.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

C = TypeVar("C", bound=type)


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Any = _Missing()


class _Field:
    __slots__ = ("compare", "default", "factory", "repr")

    def __init__(self, default: Any, factory: Any, compare: bool, repr: bool) -> None:
        self.default, self.factory, self.compare, self.repr = default, factory, compare, repr


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] = _MISSING,
    compare: bool = True,
    repr: bool = True,
) -> Any:
    """A field's default made by ``default_factory`` for each instance, or a field that
    ``__eq__`` (``compare=False``) or ``__repr__`` (``repr=False``) leaves out."""
    if default is not _MISSING and default_factory is not _MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return _Field(default, default_factory, compare, repr)


@overload
def record(cls: C, /) -> C: ...
@overload
def record(*, frozen: bool = False) -> Callable[[C], C]: ...


@dataclass_transform(field_specifiers=(field,))
def record(cls: C | None = None, /, *, frozen: bool = False) -> C | Callable[[C], C]:
    """Make ``cls`` a record (see the module's docstring); ``@record`` or
    ``@record(frozen=True)``."""

    def wrap(cls: C) -> C:
        return _build(cls, frozen)

    return wrap if cls is None else wrap(cls)


def _build(cls: C, frozen: bool) -> C:
    names: list[str] = []
    defaults: dict[str, tuple[bool, Any]] = {}  # name: (is a factory, the value or factory)
    shown: list[str] = []
    compared: list[str] = []
    # The class's own annotations, not a base's; without inspect (whose import costs 5 ms).  A
    # Python that evaluates annotations lazily keeps none in __dict__: the attribute then.
    own = cls.__dict__.get("__annotations__")  # noqa: RUF063
    if own is None:
        own = getattr(cls, "__annotations__", {})
    for name, annotation in own.items():
        if "ClassVar" in str(annotation) or "InitVar" in str(annotation):
            raise TypeError(f"{cls.__qualname__}.{name}: a record has no ClassVar or InitVar")
        value = cls.__dict__.get(name, _MISSING)
        spec = value if isinstance(value, _Field) else _Field(value, _MISSING, True, True)
        if spec.factory is not _MISSING:
            defaults[name] = (True, spec.factory)
        elif spec.default is not _MISSING:
            if isinstance(spec.default, (list, dict, set)):
                raise ValueError(f"{cls.__qualname__}.{name}: mutable default; use default_factory")
            defaults[name] = (False, spec.default)
        elif defaults:
            raise TypeError(f"{cls.__qualname__}.{name}: no default, after a field with one")
        if isinstance(value, _Field):
            # as dataclasses does: the class attribute is the plain default, or nothing
            if spec.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        names.append(name)
        if spec.repr:
            shown.append(name)
        if spec.compare:
            compared.append(name)
    for base in cls.__mro__[1:-1]:
        if "__record_fields__" in base.__dict__:
            raise TypeError(f"{cls.__qualname__}: a record cannot inherit another's fields")

    cls.__record_fields__ = tuple(names)  # type: ignore[attr-defined]
    cls.__match_args__ = tuple(names)  # type: ignore[attr-defined,misc]
    _set(cls, "__init__", _init(cls.__qualname__, tuple(names), defaults))
    _set(cls, "__repr__", _repr(tuple(shown)))
    key = attrgetter(*compared) if compared else (lambda _: ())
    own_hash = cls.__dict__.get("__hash__") is not None
    _set(cls, "__eq__", _eq(key))
    if frozen:
        _set(cls, "__setattr__", _refuse_set)
        _set(cls, "__delattr__", _refuse_del)
        if not own_hash:
            _set(cls, "__hash__", lambda self: hash(key(self)), replace=True)
    elif not own_hash:
        cls.__hash__ = None  # type: ignore[assignment]  # mutable and compared by value
    return cls


def _set(cls: type, name: str, function: Callable[..., Any], replace: bool = False) -> None:
    if name in cls.__dict__ and not replace:
        return  # the class's own method wins, as with dataclasses
    function.__qualname__ = f"{cls.__qualname__}.{name}"
    function.__name__ = name
    setattr(cls, name, function)


def _init(
    qualname: str, names: tuple[str, ...], defaults: dict[str, tuple[bool, Any]]
) -> Callable[..., None]:
    count = len(names)
    position = {name: i for i, name in enumerate(names)}
    least = 1 + sum(1 for name in names if name not in defaults)  # self and the required
    takes = f"{count + 1}" if least == count + 1 else f"from {least} to {count + 1}"
    takes += " positional arguments"

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > count:
            raise TypeError(f"{qualname}.__init__() takes {takes} but {len(args) + 1} were given")
        values = self.__dict__
        for name in kwargs:
            at = position.get(name)
            if at is None or at < len(args):
                words = "an unexpected keyword" if at is None else "multiple values for"
                raise TypeError(f"{qualname}.__init__() got {words} argument {name!r}")
        if len(args) == count:  # every field given in order: the common call
            values.update(zip(names, args, strict=True))
            return
        missing = [n for n in names[len(args) :] if n not in kwargs and n not in defaults]
        if missing:
            raise TypeError(f"{qualname}.__init__() {_missing(missing)}")
        # In field order, as a dataclass fills them: __dict__ keeps that order (as_json uses it)
        values.update(zip(names, args, strict=False))
        for name in names[len(args) :]:
            if name in kwargs:
                values[name] = kwargs[name]
            else:
                is_factory, default = defaults[name]
                values[name] = default() if is_factory else default

    return __init__


def _missing(names: list[str]) -> str:
    """Python's own words for a call that lacks arguments."""
    quoted = [repr(n) for n in names]
    if len(quoted) == 1:
        listed = quoted[0]
    elif len(quoted) == 2:
        listed = " and ".join(quoted)
    else:
        listed = ", ".join(quoted[:-1]) + ", and " + quoted[-1]
    plural = "s" if len(names) > 1 else ""
    return f"missing {len(names)} required positional argument{plural}: {listed}"


def _repr(shown: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{type(self).__qualname__}({inner})"

    return __repr__


def _eq(key: Callable[[Any], Any]) -> Callable[[Any, object], Any]:
    def __eq__(self: Any, other: object) -> Any:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return key(self) == key(other)

    return __eq__


def _refuse_set(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_del(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")
