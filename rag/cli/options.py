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
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from rag.cli.common import fail

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., None])

#: Other spellings of some fields' flags: one letter, or an old name kept working.
SHORT_FLAGS = {"mode": "-m", "top_k": "-k", "filters": "-f", "llm_rerank": "--rerank"}
#: The LLM settings ``rag ask`` and ``rag chat`` take as flags, by their ``Settings`` field.
LLM_FLAGS = {
    "llm_provider": "--llm-provider",
    "llm_base_url": "--llm-base-url",
    "llm_model": "--llm-model",
    "llm_api_key": "--llm-api-key",
    "llm_timeout": "--llm-timeout",
    "llm_max_image_side": "--max-image-side",
}


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
    """Declare ``model``'s fields as the command's flags, in place of its parameter ``param``, which receives the
    validated model."""
    flags = {
        name: (_default(info), _typer_annotation(info, [flag(name, model), *_short(name)], info.description))
        for name, info in model.model_fields.items()
    }
    return _declaring(flags, param, lambda values: checked_options(model, values))


def with_settings(flags: Mapping[str, str], param: str = "settings") -> Callable[[F], F]:
    """Declare fields of ``Settings`` as flags (``flags``: field → flag), in place of the command's parameter
    ``param``, which receives the values given (for ``settings_from``); the help names each one's variable."""
    from rag.settings import Settings

    declared: dict[str, tuple[object, object]] = {}
    for name, spelled in flags.items():
        info = Settings.model_fields[name]
        help_text = f"{info.description} [RAG_{name.upper()}]"
        declared[name] = (None, _typer_annotation(info, [spelled], help_text, optional=True))
    return _declaring(declared, param, lambda values: {k: v for k, v in values.items() if v is not None})


def _declaring(
    flags: Mapping[str, tuple[object, object]], param: str, build: Callable[[dict[str, object]], object]
) -> Callable[[F], F]:
    """Replace a command's parameter ``param`` by the ``flags`` (name → default, annotation); the command receives
    ``build`` of their values as ``param``."""

    def decorate(command: F) -> F:
        hints = get_type_hints(command, include_extras=True)
        signature = inspect.signature(command)
        kind = signature.parameters[param].kind
        declared = [inspect.Parameter(n, kind, default=d, annotation=a) for n, (d, a) in flags.items()]
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            own = parameter.replace(annotation=hints.get(parameter.name, parameter.annotation))
            parameters.extend(declared if parameter.name == param else [own])

        @functools.wraps(command)
        def run(**kwargs: object) -> None:
            values = {name: kwargs.pop(name) for name in flags}
            command(**kwargs, **{param: build(values)})

        del run.__wrapped__  # typer reads the signature below, not the command's
        run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run  # type: ignore[return-value]

    return decorate


def _short(field: str) -> list[str]:
    return [SHORT_FLAGS[field]] if field in SHORT_FLAGS else []


def _default(info: FieldInfo) -> object:
    return None if info.default is None or isinstance(info.default, (list, dict)) else info.default


def _typer_annotation(info: FieldInfo, decls: list[str], help_text: str | None, optional: bool = False) -> object:
    """``Annotated[<the type the CLI reads>, typer.Option(...)]`` for one field."""
    cli_type: object = _cli_type(info.annotation)
    if cli_type is bool and info.default is True:
        decls = [f"{decls[0]}/--no-{decls[0][2:]}", *decls[1:]]
    if optional or _default(info) is None:
        cli_type = Optional[cli_type]  # noqa: UP045
    return Annotated[cli_type, typer.Option(*decls, help=help_text)]


def _cli_type(annotation: object) -> type:
    """What the CLI reads for a field's type: the first type of a union, enums and literals as strings (the
    model checks them, with a message that lists the choices)."""
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arm for arm in get_args(annotation) if arm is not type(None))
    if get_origin(annotation) is Literal or (
        isinstance(annotation, type) and issubclass(annotation, (Enum, SecretStr))
    ):
        return str
    if get_origin(annotation) is list:
        return list[str]
    if get_origin(annotation) is dict:
        return str
    if not isinstance(annotation, type):
        raise TypeError(f"no CLI type for {annotation!r}")
    return annotation
