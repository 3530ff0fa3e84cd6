"""Alembic migrations of the control DB (run with ``sandbox.control.db.migrate``)."""
