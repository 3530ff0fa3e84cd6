"""The privacy-budget ledger (docs/budget.md).

* ``values``: exact budget arithmetic, ``BudgetStatus``, ``Scope``, ``ReleaseStatus`` (pure).
* ``models``: the ``releases`` and ``budget_spend`` tables (migration ``0002_ledger``).
* ``store``: ``reserve`` → ``commit`` | ``fail``, ``sweep_reservations`` (abandoned), ``find_cached``,
  ``status``, ``verify``.

Nothing is imported here, so importing ``sandbox.ledger.values`` stays free of I/O.
"""
