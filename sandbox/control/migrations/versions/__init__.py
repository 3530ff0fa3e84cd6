"""Migration scripts, chained by fixed ids: 0001_foundation, 0002_ledger, 0003_export, ..."""
