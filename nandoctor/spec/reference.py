"""The spec reference in Markdown, generated from the spec models (``nandoctor schema --markdown``).

The models are the single source of every key's type, default, range and meaning; this module
only walks them, so ``docs/spec.md`` cannot drift from what the loader accepts (a test regenerates
it and compares). One table per section, in the order the sections appear in a spec.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from nandoctor.spec.models import Spec

TITLE = "# The network spec: every key"
REGENERATE = "nandoctor schema --markdown > docs/spec.md"
_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def markdown_reference(root: type[BaseModel] = Spec) -> str:
    """The whole reference: an introduction, then one table per section of ``root``."""
    parts = [
        TITLE,
        "",
        f"<!-- generated from the spec models by `{REGENERATE}`; do not edit by hand -->",
        "",
        "A spec is a YAML mapping; unknown keys are errors. Each table lists one section's keys "
        "with their type, their default when the key is left out, the values allowed, and what "
        "they mean. `null` is YAML's empty value.",
    ]
    for path, model in _sections(root, ""):
        parts += ["", *_section(path, model)]
    return "\n".join(parts) + "\n"


def _sections(model: type[BaseModel], path: str) -> list[tuple[str, type[BaseModel]]]:
    """``model`` and every model reachable through its fields, depth first, with their paths."""
    found = [(path, model)]
    for name, info in model.model_fields.items():
        for sub, suffix in _models_in(info.annotation):
            found += _sections(sub, f"{path}.{name}{suffix}".lstrip("."))
    return found


def _models_in(tp: Any, suffix: str = "") -> list[tuple[type[BaseModel], str]]:
    """The models a field's type holds: ``(model, '')`` or ``(model, '[]')`` for a list of them."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [(tp, suffix)]
    if get_origin(tp) is list:
        return _models_in(get_args(tp)[0], suffix + "[]")
    if get_origin(tp) in (Union, types.UnionType):
        return [m for arg in get_args(tp) for m in _models_in(arg, suffix)]
    return []


def _section(path: str, model: type[BaseModel]) -> list[str]:
    heading = f"## `{path}`" if path else "## Top level"
    lines = [heading, ""]
    if path.endswith("[]"):
        lines += [f"Each entry of `{path[:-2]}` is a mapping with these keys.", ""]
    doc = " ".join((model.__doc__ or "").split()).replace("``", "`")
    if path and doc:
        lines += [doc, ""]
    lines += ["| key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        cells = [f"`{name}`", _type(info.annotation), _default(info), _allowed(info)]
        cells.append(info.description or "")
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _type(tp: Any) -> str:
    """A type in words: ``float``, ``float or null``, ``list of string``, ``mapping``."""
    if tp is type(None):
        return "null"
    if get_origin(tp) is Literal:
        return "string" if all(isinstance(v, str) for v in get_args(tp)) else "value"
    if get_origin(tp) in (Union, types.UnionType):
        names = dict.fromkeys(_type(arg) for arg in get_args(tp))
        return " or ".join(names)
    if get_origin(tp) is list:
        return f"list of {_type(get_args(tp)[0])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    names = {bool: "bool", int: "int", float: "float", str: "string", dict: "mapping"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()
        return "(section)" if isinstance(value, BaseModel) else f"`{_yaml(value)}`"
    return "" if info.default is PydanticUndefined else f"`{_yaml(info.default)}`"


def _allowed(info: FieldInfo) -> str:
    """The values allowed: the choices of a Literal, numeric bounds, a minimum length."""
    choices = _choices(info.annotation)
    limits = [
        f"{_BOUNDS[attr]} {getattr(m, attr)}"
        for m in info.metadata
        for attr in _BOUNDS
        if getattr(m, attr, None) is not None
    ]
    limits += [
        f"at least {m.min_length} entr{'y' if m.min_length == 1 else 'ies'}"
        for m in info.metadata
        if getattr(m, "min_length", None)
    ]
    return ", ".join(f"`{c}`" for c in choices) + (
        ("; " if choices else "") + ", ".join(limits) if limits else ""
    )


def _choices(tp: Any) -> list[str]:
    if get_origin(tp) is Literal:
        return [_yaml(v) for v in get_args(tp)]
    if get_origin(tp) in (Union, types.UnionType, list):
        return [c for arg in get_args(tp) for c in _choices(arg)]
    return []


def _yaml(value: Any) -> str:
    """A default as it would be written in the YAML file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def _cell(text: str) -> str:
    """Table-safe: a pipe would end the cell."""
    return text.replace("|", "\\|").replace("\n", " ")
