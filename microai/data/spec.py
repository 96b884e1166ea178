"""What every dataset module declares: its files, its options and how to build its splits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microai.data.errors import DatasetError
from microai.data.prepared import RawSplits
from microai.data.sources import SOURCE_KEYS, OfficialFile

#: ``build(options, files)``: options with defaults applied, fetched files by key -> RawSplits.
Builder = Callable[[dict[str, Any], dict[str, Path]], RawSplits]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: ``files`` is empty for a generated dataset (``synthetic``)."""

    name: str
    description: str
    files: tuple[OfficialFile, ...]
    options: dict[str, Any]
    build: Builder
    synthetic: bool = False
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def options_from(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``cfg``; unknown keys and wrong types raise DatasetError."""
        if not isinstance(cfg, dict):
            raise DatasetError(f"datasets.{self.name} must be a mapping, got {type(cfg).__name__}")
        allowed = set(self.options) | (set() if self.synthetic else set(SOURCE_KEYS))
        unknown = sorted(set(cfg) - allowed)
        if unknown:
            raise DatasetError(f"datasets.{self.name}: unknown keys {unknown}; allowed {sorted(allowed)}")
        options = dict(self.options)
        for key in self.options.keys() & cfg.keys():
            options[key] = self._checked(key, cfg[key])
        return options

    def _checked(self, key: str, value: Any) -> Any:
        default = self.options[key]
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            raise DatasetError(
                f"datasets.{self.name}.{key} must be {type(default).__name__}, got {value!r}"
            )
        if key in self.choices and value not in self.choices[key]:
            raise DatasetError(
                f"datasets.{self.name}.{key} must be one of {self.choices[key]}, got {value!r}"
            )
        return value
