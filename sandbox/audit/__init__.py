"""Append-only, hash-chained audit log: ``chain`` (pure), ``events`` (typed kinds), ``store``."""
