"""Governance (DESIGN §6; SR-07, SR-11…SR-17, SR-28…SR-32): who may use which data, for what,
and what happens when they misuse it.

* ``permissions``: the REQUIREMENTS §4 permission matrix as data; ``check_can`` / ``can``.
* ``applications`` and ``agreements``: access applications, steward decisions, versioned
  data-use agreements and the grants the DP engine checks.
* ``consent``: enterprise authorisations of banks and the record look-up they allow.
* ``sanctions``: violation reports, confirmation (access closed at once), disclosure list,
  appeal and reinstatement.
* ``channels``: demand requests, data-correction reports, SLA clocks, usage reports (overdue flag);
  ``objections``: 权益保护 objections; ``channel_rules``: their pure rules.
* ``usage``: per-dataset usage for providers; ``auditor``: read-only views of the audit chain.
* ``models``: the tables (migration ``0004_governance``); ``demo``: the demo enterprise.

See docs/governance.md.
"""
