"""``rag config``: the effective settings, and where each came from (secrets masked)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from dotenv import dotenv_values
from pydantic import SecretStr
from rich.table import Table

from rag.cli.common import app, settings_from
from rag.settings import ENV_FILE, Settings

MASK = "********"


def effective(settings: Settings, env_file: Path = Path(ENV_FILE)) -> list[dict[str, Any]]:
    """Each setting: its variable, its value (secrets masked), and its source: ``environment``, ``.env`` or
    ``default``."""
    in_file = {k.upper(): v for k, v in dotenv_values(env_file).items()} if env_file.is_file() else {}
    rows = []
    for name in Settings.model_fields:
        variable = f"RAG_{name.upper()}"
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = MASK
        elif isinstance(value, Path):
            value = str(value)
        source = "environment" if variable in os.environ else ".env" if variable in in_file else "default"
        rows.append({"variable": variable, "value": value, "source": source})
    return rows


@app.command("config")
def config(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of {variable, value, source}.")] = False,
) -> None:
    """Print the effective settings and where each came from (environment, .env, default); secrets are masked."""
    rows = effective(settings_from())
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("variable", "value", "source")
    for row in rows:
        table.add_row(row["variable"], "" if row["value"] is None else str(row["value"]), row["source"])
    from rich.console import Console

    Console().print(table)
