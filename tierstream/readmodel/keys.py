"""Redis key layout of the read model (see ``docs/interfaces.md``); the only place key names are built.

- ``{p}tier:{customer_id}``: hash, field = policy id, value = JSON of the record (without customer/policy);
- ``{p}counts:{policy}``: hash, tier -> number of customers currently in it;
- ``{p}meta``: hash, ``last_write_at`` = epoch seconds of the newest write batch;
- ``{p}ledger:{customer_id}:{policy}``: sorted set, the customer's tier changes under one policy (score =
  ``effective_at`` epoch seconds, member = canonical JSON of a :class:`~schemas.readmodel.LedgerEntry`),
  the newest :data:`LEDGER_MAX` kept;
- ``{p}ledgers:{customer_id}``: set of the policies that have a ledger for the customer (so a history
  read needs no SCAN).

Policy ids never contain ``:`` (``schemas.policy.Name``), so ``ledger:{customer_id}:{policy}`` cannot
collide between two (customer, policy) pairs even when customer ids contain colons.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Field of ``{p}meta`` holding the epoch seconds of the newest write.
LAST_WRITE_AT = "last_write_at"
#: Tier changes kept per customer and policy in the ledger; older history stays on the tier-changes topic.
LEDGER_MAX = 200


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one ``prefix`` (e.g. ``ts:``); the prefix separates deployments and tests."""

    prefix: str

    def tier(self, customer_id: str) -> str:
        """Hash of one customer's tiers, one field per policy."""
        return f"{self.prefix}tier:{customer_id}"

    def counts(self, policy: str) -> str:
        """Hash tier -> customers of one policy."""
        return f"{self.prefix}counts:{policy}"

    def ledger(self, customer_id: str, policy: str) -> str:
        """Sorted set of one customer's tier changes under one policy."""
        return f"{self.prefix}ledger:{customer_id}:{policy}"

    def ledger_policies(self, customer_id: str) -> str:
        """Set of the policies with a ledger for one customer."""
        return f"{self.prefix}ledgers:{customer_id}"

    @property
    def meta(self) -> str:
        """Hash of read-model facts (``last_write_at``)."""
        return f"{self.prefix}meta"

    @property
    def tier_pattern(self) -> str:
        """SCAN pattern matching every tier hash (for tools, never on the hot path)."""
        return f"{self.prefix}tier:*"
