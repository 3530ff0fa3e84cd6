"""Control DB: ``models`` (SQLAlchemy 2), ``db`` (engines, sessions, ``migrate``), ``migrations``."""
