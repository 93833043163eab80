"""Prometheus metrics of the stream worker: the single registry of names SRE dashboards and alerts use.

Every metric is defined here once (names carry units; histogram buckets are chosen for the values they
hold). Worker code imports the objects; ``deploy/`` dashboards and alert rules use the names. Changing a
name is a breaking change for ``deploy/prometheus`` and ``deploy/grafana``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Event time can lag minutes or days behind (late events, replays); arrival-to-emit is sub-second.
_EVENT_TIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

EVENTS_CONSUMED = Counter(
    "tierstream_events_consumed_total",
    "Input events consumed, by event type and outcome (applied, duplicate, dead_letter, repartitioned).",
    ["type", "outcome"],
)
DEAD_LETTERS = Counter(
    "tierstream_dead_letters_total",
    "Records sent to the dead-letter topic, by reason (invalid_json, schema, unknown_type, wrong_topic, "
    "future_timestamp, too_late, ...).",
    ["reason"],
)
LATE_EVENTS = Counter(
    "tierstream_late_events_total",
    "Events applied after newer events of the same customer (out of order, within the lateness horizon).",
)
DUPLICATE_EVENTS = Counter(
    "tierstream_duplicate_events_total", "Events ignored because their event_id was already applied."
)
EVENT_TO_DECISION = Histogram(
    "tierstream_event_to_decision_seconds",
    "From an event's occurred_at to the scoring decision it caused.",
    buckets=_EVENT_TIME_BUCKETS,
)
ARRIVAL_TO_EMIT = Histogram(
    "tierstream_arrival_to_emit_seconds",
    "From a record's broker timestamp to its tier change being handed to the producer.",
    buckets=_FAST_BUCKETS,
)
ROLLOUT_BLOCKED = Gauge(
    "tierstream_rollout_blocked",
    "1 while this worker refuses to roll out the policy version it runs (guard: too many customers would "
    "change tier; the worker processes nothing until forced or given another version).",
    ["policy", "version"],
)
ROLLOUT_CHANGING_SHARE = Gauge(
    "tierstream_rollout_changing_share",
    "Share of this worker's stored customers of another version that the loaded version would move to "
    "another tier (the rollout guard's measure), at the last assignment.",
    ["policy", "version"],
)
ROLLOUT_QUEUE = Gauge(
    "tierstream_rollout_queue_customers",
    "Customers this worker still has to re-score after a policy version change (rate-limited).",
)
ROLLOUT_RESCORED = Counter(
    "tierstream_rollout_rescored_total",
    "Customers re-scored after a policy version change (cause policy_change).",
)
RECORDS_HELD_BACK = Counter(
    "tierstream_input_records_held_back_total",
    "Input records not applied because they were re-deliveries or came after skipped records (the "
    "consumer seeks back; streams.offsets).",
)
INPUT_RESEEKS = Counter(
    "tierstream_input_reseeks_total",
    "Times the consumer skipped input records and was sought back to them (streams.offsets).",
)
INPUT_STALLS = Counter(
    "tierstream_input_stalls_total",
    "Times an input partition behind its end delivered nothing and was sought again (streams.stalls).",
)
INPUT_GAPS_ACCEPTED = Counter(
    "tierstream_input_gaps_accepted_total",
    "Holes in input partitions accepted as real after seeking back (transaction markers, retention).",
)
STALE_BATCHES = Counter(
    "tierstream_stale_batches_total",
    "Batches discarded unapplied and unacked because they hold records of an older consumer generation "
    "or arrived while a rebalance suspended flow (re-delivered from the committed offset).",
)
BATCH_SECONDS = Histogram(
    "tierstream_batch_process_seconds",
    "Wall time to process one batch of records (validate, fold, score, emit, write Redis).",
    buckets=_FAST_BUCKETS,
)
BATCH_RECORDS = Histogram(
    "tierstream_batch_records",
    "Records per processed batch: small when caught up (cut at once), up to TIERSTREAM_BATCH_MAX when "
    "behind (a customer's events in one batch are scored once, so big batches are cheaper per record).",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000),
)
TIER_CHANGES = Counter(
    "tierstream_tier_changes_total",
    "Tier changes emitted, by policy, from tier, to tier and cause.",
    ["policy", "from_tier", "to_tier", "cause"],
)
TIER_FLIP_FLOPS = Counter(
    "tierstream_tier_flip_flops_total",
    "Tier changes that returned to the tier held just before within 30 days (bands too narrow?).",
    ["policy"],
)
POLICY_DECISIONS_ELIDED = Counter(
    "tierstream_policy_decisions_elided_total",
    "Decisions of a policy skipped because the features it reads had not changed since a step that "
    "confirmed the held tier (streams.decide): same outputs, no evaluation.",
    ["policy"],
)
TIER_NOTICES = Counter(
    "tierstream_tier_notices_total",
    "Lifecycle notices emitted: proposals opened and closed, at-risk warnings.",
    ["policy", "kind"],
)
ADMIN_COMMANDS = Counter(
    "tierstream_admin_commands_total", "Admin commands processed, by command and result.", ["command", "accepted"]
)
SHADOW_EVALUATIONS = Counter(
    "tierstream_shadow_evaluations_total",
    "Decisions of shadow policies (scored next to the live policy, never emitted).",
    ["policy", "shadow_version"],
)
SHADOW_DIFFERENCES = Counter(
    "tierstream_shadow_differences_total",
    "Shadow decisions whose scored tier differs from the live policy's, by live and shadow tier.",
    ["policy", "shadow_version", "live_tier", "shadow_tier"],
)
CUSTOMERS_PER_TIER = Gauge(
    "tierstream_customers_per_tier",
    "Customers currently in each tier, per policy (partitions owned by this worker).",
    ["policy", "tier"],
)
PENDING_APPROVALS = Gauge(
    "tierstream_pending_approvals", "Tier-change proposals waiting for approval.", ["policy"]
)
ACTIVE_OVERRIDES = Gauge("tierstream_active_overrides", "Active manual overrides.", ["policy", "kind"])
REDIS_WRITE_SECONDS = Histogram(
    "tierstream_redis_write_seconds",
    "Latency of one pipelined read-model write batch.",
    buckets=_FAST_BUCKETS,
)
REDIS_WRITE_FAILURES = Counter(
    "tierstream_redis_write_failures_total", "Read-model write batches that failed (and were retried)."
)
REDIS_PENDING = Gauge(
    "tierstream_redis_pending_writes", "Read-model updates buffered while Redis is unavailable."
)
CONSUMER_LAG = Gauge(
    "tierstream_consumer_lag_records", "Records behind the end of each input partition.", ["topic", "partition"]
)
REBALANCES = Counter("tierstream_rebalances_total", "Partition assignments received by this worker.")
STATE_CUSTOMERS = Gauge("tierstream_state_customers", "Customers held in the state table (owned partitions).")
STATE_BYTES = Gauge("tierstream_state_bytes", "Serialized bytes of customer state (owned partitions).")
LAST_EVENT_TIMESTAMP = Gauge(
    "tierstream_last_event_timestamp_seconds", "Unix time at which this worker last processed an event."
)
WORKER_READY = Gauge("tierstream_worker_ready", "1 once the worker has partitions assigned and recovered.")
WORKER_HEALTHY = Gauge("tierstream_worker_healthy", "1 while the worker's processing loop is alive.")
COMPILED_CORE = Gauge(
    "tierstream_compiled_core",
    "1 when the hot path runs compiled (make native; scoring.accel), 0 when it runs the Python source "
    "(~10 % more CPU per event: capacity plans assume 1).",
)
DECISION_PROCESSES = Gauge(
    "tierstream_decision_processes",
    "Child processes deciding the worker's batches (TIERSTREAM_DECISION_PROCESSES; streams.decision_process), "
    "0 when it decides in its own process. A child that dies crashes the worker.",
)
