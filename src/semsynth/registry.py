"""Short-name registries. A registered class's constructor signature *is* its config.

``Registry.build({"name": "scgan", "ngf": 32}, num_classes=151)`` checks the keys against the
constructor's signature, constructs the object and records the full, resolved configuration (every
argument, defaults included) on it as ``obj.config`` so that it can be saved beside the weights and the
object rebuilt from it alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError, SemsynthError


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._docs: dict[str, str] = {}

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
        spec = dict(spec)
        if "name" not in spec:
            raise ConfigError(f"a {self.kind} config needs a 'name'; valid names are: {', '.join(self.names())}")
        name = spec.pop("name")
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
        return {"name": name, **full}

    def build(self, spec: Mapping[str, Any] | str, **interface: Any) -> Any:
        full = self.resolve(spec, **interface)
        name = full["name"]
        kwargs = {k: v for k, v in full.items() if k != "name"}
        try:
            obj = self.get(name)(**kwargs)
        except SemsynthError:  # already a user-facing message (bad data, missing files)
            raise
        except (TypeError, ValueError) as e:
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
