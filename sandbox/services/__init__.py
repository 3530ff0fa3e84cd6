"""Application layer shared by the CLI and the gateway (``queries``: the DP query path)."""
