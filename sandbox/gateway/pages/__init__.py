"""Server-rendered pages of the gateway, served on their own (publicly routed) listener.

See :mod:`sandbox.gateway.pages.app` for why the pages and the JSON API listen apart.
"""

from sandbox.gateway.pages.app import create_pages_app

__all__ = ["create_pages_app"]
