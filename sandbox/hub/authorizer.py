"""Authorizer of the single-user Jupyter server: no terminals, no /files/, no nbconvert.

Imported inside every user's server (``c.ServerApp.authorizer_class``, set by
:mod:`sandbox.hub.lockdown`), so it must stay light: jupyter_server and
jupyterhub only.

This is hardening of the user interface, not the security boundary: a kernel can
still start processes and print what it reads. The boundaries are the Unix
account (isolated mode), the gateway (DP answers only) and the export gate
(JUPYTERHUB-NOTES §4).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import AuthenticatedFileHandler
from jupyter_server.files.handlers import FilesHandler
from jupyterhub.singleuser.extension import JupyterHubAuthorizer

DENIED_RESOURCES = frozenset({"terminals", "nbconvert"})
"""Resources refused to everyone: shells, and conversion/download of notebooks (SR-24: single egress)."""


class SandboxAuthorizer(JupyterHubAuthorizer):  # type: ignore[misc]
    """JupyterHub's scope check, minus terminals, file downloads and nbconvert.

    ``/files/`` has the resource name ``contents`` (like the contents API Lab needs), so it is
    recognised by its handler class instead.
    """

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        if resource in DENIED_RESOURCES:
            self.log.info(
                "sandbox: refused %s on %s for %s", action, resource, getattr(user, "username", "?")
            )
            return False
        if isinstance(handler, AuthenticatedFileHandler | FilesHandler):
            self.log.info("sandbox: refused file download for %s", getattr(user, "username", "?"))
            return False
        return bool(super().is_authorized(handler, user, action, resource))
