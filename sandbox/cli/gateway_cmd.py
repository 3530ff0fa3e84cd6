"""``sandbox gateway serve``: run the HTTP gateway with uvicorn.

As a JupyterHub service the hub sets ``JUPYTERHUB_SERVICE_URL`` (where to listen),
``JUPYTERHUB_SERVICE_PREFIX`` (URL prefix), ``JUPYTERHUB_API_URL`` and
``JUPYTERHUB_API_TOKEN`` (to validate callers' tokens) and
``JUPYTERHUB_SERVICE_NAME`` / ``JUPYTERHUB_OAUTH_ACCESS_SCOPES`` (the scope callers
need). ``--host`` / ``--port`` override the address taken from the service URL.
The FastAPI and uvicorn imports happen only when the command runs.
"""

from __future__ import annotations

import os
from typing import Annotated
from urllib.parse import urlparse

import typer

from sandbox.cli.output import fail
from sandbox.errors import ConfigError, SandboxError

gateway_app = typer.Typer(help="The HTTP gateway notebooks talk to (FastAPI).", no_args_is_help=True)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 10101


def listen_address(host: str | None, port: int | None) -> tuple[str, int]:
    """Host and port: flags, else ``$JUPYTERHUB_SERVICE_URL``, else 127.0.0.1:10101."""
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    url_host: str | None = None
    url_port: int | None = None
    if service_url:
        parsed = urlparse(service_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                "JUPYTERHUB_SERVICE_URL is not an http(s) URL.",
                hint="Set it to e.g. http://127.0.0.1:10101 in the hub's service definition.",
            )
        url_host = parsed.hostname
        url_port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return host or url_host or DEFAULT_HOST, port or url_port or DEFAULT_PORT


@gateway_app.command("serve")
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Interface to bind (default: from JUPYTERHUB_SERVICE_URL, else 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port (default: from JUPYTERHUB_SERVICE_URL, else 10101).", min=1, max=65535),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    pages_port: Annotated[
        int | None,
        typer.Option(
            help="Also serve the HTML pages (no API) on this port of the same host; the hub routes "
            "the service prefix there (sandbox.gateway.pages). Default: API only.",
            min=1,
            max=65535,
        ),
    ] = None,
) -> None:
    """Serve the gateway API under $JUPYTERHUB_SERVICE_PREFIX (default /services/sandbox/)."""
    try:
        import uvicorn

        from sandbox.config import get_settings
        from sandbox.gateway.app import create_app, service_prefix

        bind_host, bind_port = listen_address(host, port)
        settings = get_settings()
        app = create_app(settings)
        pages = None
        if pages_port is not None:
            from sandbox.gateway.pages import create_pages_app

            pages = create_pages_app(settings, ctx=app.state.ctx)  # one service context for both
    except SandboxError as err:
        fail(err, as_json=False)
    typer.echo(f"sandbox gateway on http://{bind_host}:{bind_port}{service_prefix()}api/v1/", err=True)
    if pages is None or pages_port is None:
        uvicorn.run(app, host=bind_host, port=bind_port, log_level=log_level, proxy_headers=False, workers=1)
        return
    from sandbox.gateway.pages.serving import Listener
    from sandbox.gateway.pages.serving import serve as serve_listeners

    typer.echo(f"sandbox pages on http://{bind_host}:{pages_port}{service_prefix()}", err=True)
    serve_listeners(
        [Listener(app, bind_host, bind_port), Listener(pages, bind_host, pages_port)], log_level=log_level
    )


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")
