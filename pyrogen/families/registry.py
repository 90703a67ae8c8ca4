"""
The registry of model families: :func:`register` adds a :class:`~pyrogen.families.Family`
subclass under its ``name``; :func:`get` and :func:`names` are what the command line, the
run loader and the tests ask. Registering checks the family's declarations, so a family
with an unknown option in its per-data-set defaults fails at import, not at a user's run.
"""

from __future__ import annotations

from typing import TypeVar

from pyrogen.families.base import Family, check_dataset_defaults

_FAMILIES: dict[str, Family] = {}

F = TypeVar("F", bound=type[Family])


def register(cls: F) -> F:
    """Class decorator: register one instance of the family ``cls`` under ``cls.name``."""
    family = cls()
    if family.name in _FAMILIES:
        raise ValueError(f"a family named {family.name!r} is registered already")
    check_dataset_defaults(family)
    _FAMILIES[family.name] = family
    return cls


def get(name: str) -> Family:
    """The family registered as ``name``."""
    if name not in _FAMILIES:
        raise ValueError(f"model family must be one of {names()}, got {name!r}")
    return _FAMILIES[name]


def names() -> tuple[str, ...]:
    """The registered families' names, in registration order."""
    return tuple(_FAMILIES)


def families() -> tuple[Family, ...]:
    """The registered families, in registration order."""
    return tuple(_FAMILIES.values())


__all__ = ["families", "get", "names", "register"]
