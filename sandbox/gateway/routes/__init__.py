"""Routes of ``/api/v1/``, one module per area; each defines ``router``."""
