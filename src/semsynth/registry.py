"""Short-name registries. A registered class's constructor signature *is* its config.

``Registry.build({"name": "scgan", "ngf": 32}, num_classes=151)`` checks the keys against the
constructor's signature, constructs the object and records the full, resolved configuration (every
argument, defaults included) on it as ``obj.config`` so that it can be saved beside the weights and the
object rebuilt from it alone.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import numbers
import os
import reprlib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError, SemsynthError

INT64_MAX = 2**63 - 1  # every integer option ends up in C (torch, numpy): larger values cannot be right


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._docs: dict[str, str] = {}
        self._hints: dict[str, dict[str, Any]] = {}

    def register(self, name: str, doc: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(cls: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = cls
            summary = doc or (inspect.getdoc(cls) or "").split("\n")[0]
            self._docs[name] = summary
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._entries)

    def doc(self, name: str) -> str:
        return self._docs[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s are: {', '.join(self.names())}"
            )
        return self._entries[name]

    def parameters(self, name: str) -> dict[str, inspect.Parameter]:
        sig = inspect.signature(self.get(name))
        return {
            k: p
            for k, p in sig.parameters.items()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        }

    def defaults(self, name: str) -> dict[str, Any]:
        return {k: p.default for k, p in self.parameters(name).items() if p.default is not inspect.Parameter.empty}

    def resolve(self, spec: Mapping[str, Any] | str, **interface: Any) -> dict[str, Any]:
        """Return the complete keyword set (defaults filled in) for ``spec`` plus ``interface``."""
        if isinstance(spec, str):
            spec = {"name": spec}
        if not isinstance(spec, Mapping):
            raise ConfigError(f"a {self.kind} config must be a mapping with a 'name' (one of: "
                              f"{', '.join(self.names())}), got {short_repr(spec)} ({type_name(spec)})")
        spec = dict(spec)
        bad_keys = [k for k in spec if not isinstance(k, str)]
        if bad_keys:
            raise ConfigError(f"{self.kind} option names must be strings, got {short_repr(bad_keys[0])} "
                              f"({type_name(bad_keys[0])}); write the option name, e.g. name: ...")
        if "name" not in spec:
            raise ConfigError(f"a {self.kind} config needs a 'name'; valid names are: {', '.join(self.names())}")
        name = spec.pop("name")
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} name = {short_repr(name)} should be a string; valid {self.kind}s are: "
                              f"{', '.join(self.names())}")
        params = self.parameters(name)
        unknown = sorted(set(spec) - set(params))
        if unknown:
            raise ConfigError(
                f"{self.kind} {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
                f"valid options are: {', '.join(params)}"
            )
        # Interface arguments (known from the dataset) fill what the user did not set.
        kwargs = {k: v for k, v in interface.items() if k in params and k not in spec}
        kwargs.update(spec)
        missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kwargs]
        if missing:
            raise ConfigError(f"{self.kind} {name!r} needs {', '.join(missing)}")
        full = {k: kwargs.get(k, p.default) for k, p in params.items()}
        # The constructor's annotations are the schema: check (and gently coerce int -> float) every value.
        hints = self.type_hints(name)
        allow_nonfinite = set(getattr(self.get(name), "config_allow_nonfinite", ()))
        for k, v in full.items():
            if k in hints:
                full[k] = check_value(f"{self.kind} {name!r}: {k}", v, hints[k], allow_nonfinite=k in allow_nonfinite)
        return {"name": name, **full}

    def type_hints(self, name: str) -> dict[str, Any]:
        """The evaluated annotations of ``name``'s constructor (empty when they cannot be evaluated)."""
        cls = self.get(name)
        if name not in self._hints:
            target = cls.__init__ if inspect.isclass(cls) else cls
            try:
                hints = typing.get_type_hints(target)
            except Exception:  # noqa: BLE001 - unresolvable annotations: no type checks rather than no model
                hints = {}
            hints.pop("return", None)
            self._hints[name] = hints
        return self._hints[name]

    def build(self, spec: Mapping[str, Any] | str, **interface: Any) -> Any:
        full = self.resolve(spec, **interface)
        name = full["name"]
        kwargs = {k: v for k, v in full.items() if k != "name"}
        try:
            obj = self.get(name)(**kwargs)
        except SemsynthError:  # already a user-facing message (bad data, missing files)
            raise
        except (TypeError, ValueError, OverflowError) as e:
            raise ConfigError(f"cannot build {self.kind} {name!r}: {e}") from e
        try:
            obj.config = _plain(full)
        except AttributeError:  # objects that do not accept attributes
            pass
        return obj


def _plain(value: Any) -> Any:
    """Convert tuples to lists recursively so the config is JSON/YAML friendly."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------------------------
# Typed option values: shared by the registries (constructor annotations) and the config dataclasses


def check_range(name: str, value: Any, *, ge: float | None = None, gt: float | None = None,
                le: float | None = None, lt: float | None = None, integer: bool = False) -> None:
    """For constructors: raise ``ValueError("name = value is out of range; valid: ...")`` unless ``value`` is a
    finite number (an integer when ``integer``) within the bounds."""
    bounds = [f"{op} {b}" for op, b in ((">=", ge), (">", gt), ("<=", le), ("<", lt)) if b is not None]
    valid = ("an integer " if integer else "a finite number ") + (" and ".join(bounds) if bounds else "")
    valid = valid.strip()
    kind_ok = isinstance(value, numbers.Integral if integer else numbers.Real) and not _is_bool(value)
    if not kind_ok:
        raise ValueError(f"{name} = {short_repr(value)} should be {'an integer' if integer else 'a number'}; "
                         f"valid: {valid}")
    ok = math.isfinite(value) and (ge is None or value >= ge) and (gt is None or value > gt) and (
        le is None or value <= le) and (lt is None or value < lt)
    if not ok:
        raise ValueError(f"{name} = {short_repr(value)} is out of range; valid: {valid}")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 8, 8, 6, 6
_REPR.maxstring, _REPR.maxlong, _REPR.maxother = 70, 40, 70


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about arbitrary user input. Never expands more
    than a few levels and items, so a YAML alias bomb (a billion shared references) costs nothing to show."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a repr that fails (odd objects)
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def type_name(value: Any) -> str:
    """The YAML-ish name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def describe_type(annotation: Any) -> str:
    """``int | None`` -> ``"int or null"``; ``Sequence[int]`` -> ``"list of int"``."""
    if annotation is type(None) or annotation is None:
        return "null"
    if annotation is Any:
        return "any value"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args)
    if origin in (list, tuple, collections.abc.Sequence, set, frozenset):
        return f"list of {describe_type(args[0])}" if args else "list"
    if origin in (dict, collections.abc.Mapping):
        return f"mapping of {describe_type(args[0])} to {describe_type(args[1])}" if len(args) == 2 else "mapping"
    if annotation is bool:
        return "bool (true or false)"
    return getattr(annotation, "__name__", str(annotation))


def check_value(where: str, value: Any, annotation: Any, *, allow_nonfinite: bool = False) -> Any:
    """Check ``value`` against the type ``annotation`` and return it, gently converted (an int where a float is
    expected becomes a float; a tuple where a list is expected becomes a list).

    Raises :class:`ConfigError` naming ``where`` (e.g. ``"train.batch_size"``), the value and what is expected.
    Floats must be finite unless ``allow_nonfinite``; integers must fit in 64 bits; strings must not hold NUL.
    """
    try:
        return _check(where, value, annotation, allow_nonfinite)
    except RecursionError:
        raise ConfigError(f"{where}: the value is nested too deeply (or refers to itself); give a plain value") \
            from None


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool too


def _nonfinite_error(where: str, value: Any) -> ConfigError:
    return ConfigError(f"{where} = {short_repr(value)} is not a finite number (nan and inf are not allowed here); "
                       f"give a finite value")


def _check(where: str, value: Any, annotation: Any, allow_nonfinite: bool) -> Any:
    if isinstance(annotation, str) or annotation is Any or annotation is inspect.Parameter.empty:
        return value  # unevaluated or absent annotation: nothing to check against
    if annotation is None or annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where} = {short_repr(value)} should be null")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _check(where, value, args[0], allow_nonfinite)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for opt in args:
            if opt is type(None):
                continue
            try:
                return _check(where, value, opt, allow_nonfinite)
            except ConfigError:
                continue
        if isinstance(value, float) and not math.isfinite(value) and float in args:
            raise _nonfinite_error(where, value)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX and (
                int in args or float in args):
            raise ConfigError(f"{where} = {short_repr(value)} is too large (integers must fit in 64 bits)")
        raise ConfigError(f"{where} = {short_repr(value)} should be of type {describe_type(annotation)}")
    if origin is typing.Literal:
        if any(type(value) is type(a) and value == a for a in args):
            return value
        raise ConfigError(f"{where} = {short_repr(value)}; valid: {', '.join(map(str, args))}")
    if annotation is float:
        if _is_bool(value) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{where} = {short_repr(value)} should be of type float")
        if isinstance(value, numbers.Integral) and abs(int(value)) > INT64_MAX:
            raise ConfigError(f"{where} = {short_repr(value)} is too large (integers must fit in 64 bits)")
        value = float(value)
        if not allow_nonfinite and not math.isfinite(value):
            raise _nonfinite_error(where, value)
        return value
    if annotation is int:
        if _is_bool(value) or not isinstance(value, numbers.Integral):
            raise ConfigError(f"{where} = {short_repr(value)} should be of type int")
        if abs(int(value)) > INT64_MAX:
            raise ConfigError(f"{where} = {short_repr(value)} is too large (integers must fit in 64 bits)")
        return int(value)
    if annotation is bool:
        if not _is_bool(value):
            raise ConfigError(f"{where} = {short_repr(value)} should be true or false")
        return bool(value)
    if annotation is str:
        if isinstance(value, os.PathLike):  # a Path from the Python API
            value = os.fspath(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {short_repr(value)} should be of type str")
        if "\x00" in value:
            raise ConfigError(f"{where} = {short_repr(value)} holds a NUL character; remove it")
        return value
    if origin in (list, tuple, collections.abc.Sequence, set, frozenset) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} = {short_repr(value)} should be a {describe_type(annotation)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where} = {short_repr(value)} should be a list of {len(args)} values")
            return [_check(f"{where}[{i}]", v, a, allow_nonfinite) for i, (v, a) in enumerate(zip(value, args))]
        item = args[0] if args else Any
        return [_check(f"{where}[{i}]", v, item, allow_nonfinite) for i, v in enumerate(value)]
    if origin in (dict, collections.abc.Mapping) or annotation in (dict,):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} = {short_repr(value)} should be a {describe_type(annotation)}")
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {_check(f"{where} key", k, kt, allow_nonfinite): _check(f"{where}[{k!r}]", v, vt, allow_nonfinite)
                for k, v in value.items()}
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        raise ConfigError(f"{where} = {short_repr(value)} should be of type {describe_type(annotation)}")
    return value  # an annotation this checker does not know: accept
