"""One declared schema for every config that users write (YAML recipes, ``--set``, JSON).

Each config dataclass (:class:`~fervid.training.config.TrainConfig`, its nested
:class:`~fervid.training.augment.AugmentConfig`, :class:`~fervid.training.study.StudyConfig`)
pairs with a ``{field name: Rule}`` mapping. :func:`check_fields` checks every field's type (its
annotation), finiteness (every float, also inside lists) and the field's rule, and refuses a
field that has no rule (a bug in the dataclass, caught by any test that builds the config): a
new key cannot be added without its check. :func:`from_mapping` builds a config from plain
values (keys must be strings; unknown keys are named); :func:`load_yaml` reads YAML and refuses
a duplicated key (naming it and its line) instead of silently keeping the last value.

A few lines for the handful of types these dataclasses use (scalars, optionals, lists, tuples,
dicts, nested dataclasses) rather than a validation library as a core dependency.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fervid.errors import UserValueError

# ---------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """What a field's value must satisfy beyond its type: a range (``lo``/``hi``, open or
    closed), one of ``choices``, an ordered pair (``ordered``), applied to each element of a
    list (``each``). ``None`` always passes when the annotation allows it (``null`` = off)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[Any, ...] | None = None
    ordered: bool = False
    each: bool = False
    note: str = ""

    def describe(self) -> str:
        lo, hi = _fmt(self.lo), _fmt(self.hi)
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {lo}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {hi}"
        return "any value of its type"

    def _ok(self, v: Any) -> bool:
        if self.choices is not None:
            return v in self.choices
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def check(self, key: str, value: Any) -> None:
        if value is None:
            return
        items = list(value) if (self.each or self.ordered) else [value]
        for v in items:
            if not self._ok(v):
                what = "each value of " if len(items) > 1 or self.each else ""
                note = f" ({self.note})" if self.note else ""
                raise UserValueError(f"config: {what}{key} must be {self.describe()}{note}, got {value!r}")
        if self.ordered and list(items) != sorted(items):
            raise UserValueError(f"config: {key} must be (low, high) with low <= high, got {value!r}")


def _fmt(x: float | None) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}" if x is not None else ""


def between(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False, note: str = "") -> Rule:
    return Rule(lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, note=note)


def at_least(lo: float, note: str = "") -> Rule:
    return Rule(lo=lo, note=note)


def positive(note: str = "") -> Rule:
    return Rule(lo=0, lo_open=True, note=note)


def one_of(*choices: Any) -> Rule:
    return Rule(choices=tuple(choices))


PROBABILITY = between(0.0, 1.0, note="a probability")
ANY = Rule()  # a path, a name checked where it is used, a flag: any value of the annotated type


# ---------------------------------------------------------------------------- type checks


class _Mismatch(Exception):
    pass


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def typed(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against ``hint`` (ints accepted as floats, lists as tuples; floats must
    be finite), or a :class:`UserValueError` naming ``key``, the expected type and the value."""
    try:
        return _convert(key, value, hint)
    except _Mismatch:
        raise UserValueError(
            f"config key {key!r}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})"
        ) from None


def _scalar(key: str, value: Any, hint: Any) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise UserValueError(f"config: {key} must be a finite number, got {value!r}")
            return float(value)
        raise _Mismatch
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    raise TypeError(f"config field {key!r}: unsupported annotation {hint!r}")  # a bug in the dataclass


def _convert(key: str, value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(key, value, a)
            except _Mismatch:
                pass
        raise _Mismatch
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise _Mismatch
        return _build(hint, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch
            return tuple(_convert(key, v, a) for v, a in zip(value, args))
        items = [_convert(key, v, args[0]) for v in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        kt, vt = args if args else (Any, Any)
        return {_convert(key, k, kt): _convert(key, v, vt) for k, v in value.items()}
    return _scalar(key, value, hint)


# ------------------------------------------------------------------------------ configs

_SCHEMAS: dict[type, Mapping[str, Rule]] = {}


def declare(schema: Mapping[str, Rule]) -> Callable[[type], type]:
    """Class decorator: ``schema`` holds the rule of every field of the dataclass."""

    def deco(cls: type) -> type:
        _SCHEMAS[cls] = schema
        return cls

    return deco


def schema_of(cls: type) -> Mapping[str, Rule]:
    if cls not in _SCHEMAS:
        raise TypeError(f"{cls.__name__} declares no config schema (fervid.training.schema.declare)")
    return _SCHEMAS[cls]


def check_keys(d: Mapping[Any, Any], valid: set[str], what: str) -> None:
    """Keys must be strings (YAML allows ``1:`` and ``null:``) and known."""
    odd = [k for k in d if not isinstance(k, str)]
    if odd:
        raise UserValueError(
            f"{what}: key {odd[0]!r} ({type(odd[0]).__name__}) is not a name; keys are strings such as "
            f"{sorted(valid)[:3]}"
        )
    unknown = sorted(set(d) - valid)
    if unknown:
        raise UserValueError(f"unknown {what} key(s) {unknown}; valid: {sorted(valid)}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # resolves every annotation string: once per class


def _build(cls: type, d: Mapping[Any, Any], prefix: str, what: str = "") -> Any:
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    check_keys(d, names, what or f"{prefix} config")
    dotted = f"{prefix}." if prefix else ""
    obj = cls(**{k: typed(f"{dotted}{k}", v, hints[k]) for k, v in d.items()})
    check_fields(obj, prefix)
    return obj


def from_mapping(cls: type, d: Any, what: str = "config") -> Any:
    """A ``cls`` config from plain values, every field type-, range- and finiteness-checked."""
    if not isinstance(d, Mapping):
        raise UserValueError(f"{what}: expected a mapping of keys to values, got a {type(d).__name__}")
    return _build(cls, d, "", what)


def check_fields(obj: Any, prefix: str = "") -> None:
    """Check every field of the dataclass ``obj`` against its annotation and declared rule."""
    cls: type = type(obj)
    schema = schema_of(cls)
    hints = _hints(cls)
    dotted = f"{prefix}." if prefix else ""
    for f in dataclasses.fields(obj):
        if f.name not in schema:
            raise TypeError(f"{cls.__name__}.{f.name} has no rule in its declared schema")  # a bug, not input
        value = typed(f"{dotted}{f.name}", getattr(obj, f.name), hints[f.name])
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_fields(value, f"{dotted}{f.name}")
        schema[f.name].check(f"{dotted}{f.name}", value)


# ---------------------------------------------------------------------------------- YAML


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML (safe types only); a syntax error or a key given twice in one mapping is a
    :class:`UserValueError` naming ``source``, the key and its line."""
    import yaml

    class _Strict(yaml.SafeLoader):
        pass

    def mapping(loader: _Strict, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` keys may be overridden: that is what a merge is for
            key = loader.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key (a list...): the constructor reports it
                continue
            line = key_node.start_mark.line + 1
            if first is not None:
                raise UserValueError(f"{source}: key {key!r} is given twice (lines {first} and {line})")
            seen[key] = line
        return dict(loader.construct_mapping(node, deep=deep))

    _Strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=_Strict)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as e:
        raise UserValueError(f"{source}: not valid YAML ({' '.join(str(e).split())})") from e
    except RecursionError as e:  # thousands of nested brackets
        raise UserValueError(f"{source}: nested too deeply to be a config") from e
