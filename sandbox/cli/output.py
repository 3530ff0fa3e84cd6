"""Shared CLI output helpers: JSON or human output, and the one error shape (exit 2)."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

from sandbox.errors import SandboxError


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def fail(err: SandboxError, *, as_json: bool) -> NoReturn:
    """Print a SandboxError in the documented shape and exit 2."""
    if as_json:
        emit_json(err.to_dict())
    else:
        typer.echo(f"error [{err.code}]: {err.message}", err=True)
        if err.hint:
            typer.echo(f"hint: {err.hint}", err=True)
    sys.exit(2)
