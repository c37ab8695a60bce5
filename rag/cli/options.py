"""Typer options declared from pydantic models: a command gets one flag per field, and the model checks them.

``@with_options(QueryOptions)`` replaces a command's ``options`` parameter by the model's fields, each a flag
named after the field (``--min-score``), typed as the CLI reads it, with the field's description as its help.
The command receives the validated model; a refused value stops the command (exit 2) with a message that
names the flags. A new option is a new field of the model: no command changes.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Annotated, Literal, Optional, TypeVar, Union, get_args, get_origin, get_type_hints

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from rag.cli.common import fail

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., None])

#: One-letter spellings of some fields' flags.
SHORT_FLAGS = {"mode": "-m", "top_k": "-k", "filters": "-f"}


def flag(field: str, model: type[BaseModel]) -> str:
    """The flag of a field, by its Python name or its alias: ``min_score`` → ``--min-score``."""
    info = model.model_fields.get(field)
    if info is None:
        info = next((i for i in model.model_fields.values() if i.alias == field), None)
    name = (info.alias if info is not None and info.alias else None) or field
    return "--" + name.replace("_", "-")


def checked_options(model: type[M], values: Mapping[str, object]) -> M:
    """``model`` from the flags' values (None: not given), or a usage error naming the flags."""
    from rag.retrieval.options import describe

    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as e:
        raise fail(describe(e, lambda field: flag(field, model))) from e


def with_options(model: type[BaseModel], param: str = "options") -> Callable[[F], F]:
    """Declare ``model``'s fields as the command's flags, in place of its parameter ``param``."""

    def decorate(command: F) -> F:
        hints = get_type_hints(command, include_extras=True)
        signature = inspect.signature(command)
        fields = [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=_default(info),
                              annotation=_typer_annotation(name, info, model))
            for name, info in model.model_fields.items()
        ]
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            own = parameter.replace(annotation=hints.get(parameter.name, parameter.annotation))
            parameters.extend(fields if parameter.name == param else [own])

        @functools.wraps(command)
        def run(**kwargs: object) -> None:
            values = {name: kwargs.pop(name) for name in model.model_fields}
            command(**kwargs, **{param: checked_options(model, values)})

        del run.__wrapped__  # type: ignore[attr-defined]  # typer reads the signature below, not the command's
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run  # type: ignore[return-value]

    return decorate


def _default(info: FieldInfo) -> object:
    return None if info.default is None or isinstance(info.default, (list, dict)) else info.default


def _typer_annotation(name: str, info: FieldInfo, model: type[BaseModel]) -> object:
    """``Annotated[<the type the CLI reads>, typer.Option(...)]`` for one field."""
    cli_type = _cli_type(info.annotation)
    decls = [flag(name, model)]
    if cli_type is bool and info.default is True:
        decls = [f"{decls[0]}/--no-{decls[0][2:]}"]
    if name in SHORT_FLAGS:
        decls.append(SHORT_FLAGS[name])
    if _default(info) is None:
        cli_type = Optional[cli_type]  # noqa: UP007  # typer reads typing's Optional
    return Annotated[cli_type, typer.Option(*decls, help=info.description)]


def _cli_type(annotation: object) -> type:
    """What the CLI reads for a field's type: the first type of a union, enums and literals as strings (the
    model checks them, with a message that lists the choices)."""
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arm for arm in get_args(annotation) if arm is not type(None))
    if get_origin(annotation) is Literal or (isinstance(annotation, type) and issubclass(annotation, Enum)):
        return str
    if get_origin(annotation) is list:
        return list[str]  # type: ignore[return-value]
    if get_origin(annotation) is dict:
        return str
    if not isinstance(annotation, type):
        raise TypeError(f"no CLI type for {annotation!r}")
    return annotation
