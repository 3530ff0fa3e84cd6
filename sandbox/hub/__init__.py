"""JupyterHub wiring of the sandbox, imported by ``jupyterhub_config.py``.

Light modules (stdlib, jupyterhub, traitlets): ``settings`` (env), ``config`` (the one
``configure(c)``), ``authenticator`` (registry sign-in), ``services`` (gateway off the
proxy), ``spawners`` + ``isolation`` (demo / isolated modes), ``lockdown`` + ``authorizer``
(single-user server), ``process`` (start/stop the whole tree), ``hubapi`` (close access).
"""
