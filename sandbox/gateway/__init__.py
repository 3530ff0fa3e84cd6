"""The HTTP gateway (FastAPI): ``sandbox.gateway.app.create_app``; see docs/gateway-api.md.

Only ``sandbox.cli`` and tests import this package (tests/unit/test_architecture.py).
"""
