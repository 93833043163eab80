"""The one registry of topic names (and what each carries) for workers, tools, tests and docs.

Inputs: one topic per event type, keyed by ``customer_id``. Records that arrive unkeyed, or keyed by
something else, or on a partition that is not the one our partitioner gives their ``customer_id``
(e.g. a librdkafka producer, whose default partitioner is CRC32, not murmur2), are forwarded to the
repartition topic keyed by ``customer_id``, so that one customer's state has exactly one writer.
Every topic has the same partition count: the state table is co-partitioned with its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.events import EVENT_TYPES


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names under one prefix (``TIERSTREAM_TOPIC_PREFIX``)."""

    prefix: str = "tierstream."

    # Frozen: the default protocol's __setstate__ assigns the field, which a compiled frozen class refuses.
    def __reduce__(self) -> tuple[type[Topics], tuple[str]]:
        return (Topics, (self.prefix,))

    def input(self, event_type: str) -> str:
        """Input topic of one event type (``order`` -> ``<prefix>events.order``)."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}")
        return f"{self.prefix}events.{event_type}"

    @property
    def inputs(self) -> dict[str, str]:
        """Event type -> input topic."""
        return {t: self.input(t) for t in EVENT_TYPES}

    @property
    def repartition(self) -> str:
        """Internal: valid events re-keyed by ``customer_id`` (any type)."""
        return f"{self.prefix}events.repartition"

    @property
    def tier_changes(self) -> str:
        """Output: one record per tier change, keyed by ``customer_id``."""
        return f"{self.prefix}tier-changes"

    @property
    def dead_letters(self) -> str:
        """Output: original bytes of every rejected record, reason and source in headers."""
        return f"{self.prefix}dead-letters"

    @property
    def customer_tiers(self) -> str:
        """Output, compacted: the latest read-model record per (customer, policy), so a new consumer can
        bootstrap without replaying history. Key: JSON ``[customer_id, policy]``."""
        return f"{self.prefix}customer-tiers"

    @property
    def tier_proposals(self) -> str:
        """Output: tier-change proposals awaiting approval, and their closing (approved, rejected, expired)."""
        return f"{self.prefix}tier-change-proposed"

    @property
    def tier_at_risk(self) -> str:
        """Output: warnings N days before a scheduled downgrade, with the margin to keep the tier."""
        return f"{self.prefix}tier-at-risk"

    @property
    def admin_commands(self) -> str:
        """Input: overrides and approvals (schemas.admin), keyed by ``customer_id``."""
        return f"{self.prefix}admin-commands"

    @property
    def admin_audit(self) -> str:
        """Output: one CommandResult per admin command, accepted or refused with the reason."""
        return f"{self.prefix}admin-audit"

    def type_of(self, topic: str) -> str | None:
        """The event type an input topic carries; ``None`` for the repartition topic or a foreign one."""
        head = f"{self.prefix}events."
        if topic.startswith(head):
            name = topic[len(head):]
            return name if name in EVENT_TYPES else None
        return None

    def all_consumed(self) -> list[str]:
        """Every topic a worker consumes."""
        return [*self.inputs.values(), self.repartition, self.admin_commands]

    def all_produced(self) -> list[str]:
        """Every topic a worker produces (besides Faust's changelogs)."""
        return [self.repartition, self.tier_changes, self.dead_letters, self.customer_tiers, self.tier_proposals,
                self.tier_at_risk, self.admin_audit]
