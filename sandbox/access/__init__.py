"""Users, projects, grants (``registry``) and the access rules (``rules``)."""
