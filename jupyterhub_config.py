"""JupyterHub configuration of the data sandbox.

Start with ``jupyterhub -f jupyterhub_config.py`` (``sandbox demo`` does it for you).
Settings come from the environment (``SANDBOX_HUB_MODE``, ``SANDBOX_PORT``,
``SANDBOX_DATA_DIR``...; see ``sandbox/hub/settings.py`` and docs/hub.md); all wiring
lives in ``sandbox/hub/config.py``.
"""

from sandbox.hub.config import configure

configure(c)
