"""Typed settings from environment variables: the one settings class of tierstream.

Every variable is ``TIERSTREAM_<FIELD>`` (upper case), except ``REDIS_URL`` which also answers to its
conventional name. Values are validated at start-up; a bad value stops the process with the variable's
name and the reason. The object is frozen: code never mutates configuration at run time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """All configuration of workers, the API and the tools. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="TIERSTREAM_", frozen=True, extra="ignore")

    # --- broker and topics
    broker: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s), faust style.")
    topic_prefix: str = Field("tierstream.", description="Prefix of every topic name.")
    partitions: int = Field(4, ge=1, le=1024, description="Partitions of every topic (must be equal).")
    replication_factor: int = Field(1, ge=1, description="Replication of topics the worker creates.")
    embedded_broker: bool = Field(
        False,
        description="The broker is the embedded Tansu broker (tierstream.embedded): work around its wrong "
        "end offsets (see TIERSTREAM_EMBEDDED_OFFSET_CORRECTION).",
    )
    embedded_offset_correction: bool = Field(
        True,
        description="Embedded broker only: correct its end offsets on table recovery (streams/tansu.py), so "
        "producers batch and the worker produces in bulk as on Kafka (1.6-1.9 x the throughput); off: one record per "
        "producer batch, the broker notes' work-around.",
    )
    # --- worker
    app_id: str = Field("tierstream", description="Consumer group and changelog name prefix.")
    instance_id: str | None = Field(
        None,
        description="Static group membership id (e.g. the StatefulSet pod name): a restart within the "
        "session timeout gets its partitions back without a rebalance.",
    )
    store: str = Field("rocksdb://", description="Table store: rocksdb:// (persistent) or memory://.")
    compiled: bool = Field(
        True,
        description="Run the hot path's compiled build (make native) when it matches the sources; false: the "
        "Python source. Read from the environment at the first import (scoring.accel), before settings load.",
    )
    data_dir: Path = Field(Path("var/worker"), description="Directory for table stores.")
    web_port: int = Field(6066, ge=0, le=65535, description="Worker web port (/metrics, health).")
    web_host: str = Field("127.0.0.1", description="Worker web bind address.")
    policies: Annotated[tuple[str, ...], NoDecode] = Field(
        ("five_tier",),
        description="Comma-separated policy files or preset names the worker scores with.",
    )
    shadow_policies: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated policy files scored in shadow next to the live policy of the same id: "
        "differences are counted in metrics, nothing is emitted.",
    )
    rollout_max_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Policy rollout guard: refuse a new policy version (pause the worker, alert) when more "
        "than this share of its stored customers would change tier.",
    )
    rollout_force: bool = Field(False, description="Roll a new policy version out whatever share would change.")
    rollout_rate: float = Field(
        200.0, gt=0, description="Customers re-scored per second per worker after a policy version change."
    )
    rollout_burst: int = Field(200, ge=1, description="Re-scores allowed at once (token bucket size).")
    max_future_skew_seconds: float = Field(
        300.0, ge=0, description="Events this far in the future (vs. wall clock) are invalid."
    )
    lateness_horizon_days: int | None = Field(
        None, ge=1, description="Events older than this are too late; default: longest policy window."
    )
    decision_processes: int = Field(
        2, ge=0, le=64, description="Child processes deciding each batch, and re-scoring customers due (decay), "
        "customers split between them, while the worker's own process carries out the previous batch (outputs, "
        "Redis, acks) and fetches the next (streams.decision_process). 0: decide in the worker's process (one "
        "core in all)."
    )
    batch_max: int = Field(
        40000, ge=1, description="Records processed per batch at most (a customer's events in one batch are "
        "folded and scored once). Reached only when the worker is behind: bigger batches drain a backlog "
        "faster (fewer decisions per event) for more memory."
    )
    batch_max_customers: int = Field(
        20000, ge=1, description="Distinct customers (record keys) per batch at most: a batch's memory and "
        "outputs grow with its customers, its savings with events per customer, so a backlog of many "
        "customers with few events each is cut into smaller batches."
    )
    fetch_max_wait_ms: int = Field(
        100, ge=1, le=10000, description="Consumer fetch long-poll wait (Faust's own is 1,500 ms). The embedded "
        "broker holds a fetch for up to about half of it even when records are there; 20 ms made no difference "
        "to latency under load, beyond run-to-run noise, and costs more fetches (docs/performance.md, session 4)."
    )
    batch_wait_seconds: float = Field(
        0.05, gt=0, description="When behind (first record older than 0.5 s), how long a batch waits to fill; "
        "while the batch before is still being decided, a batch that is behind fills until it is full "
        "(streams.pipeline). Caught up, a batch is cut at once."
    )
    stall_check_seconds: float = Field(
        2.0, gt=0, description="How often the worker checks for input partitions behind their end that deliver "
        "nothing (then it seeks them again: streams.stalls); a stall is acted on after two to 32 checks."
    )
    session_timeout_seconds: float = Field(
        6.0, gt=0, description="Consumer session timeout; group join takes about half of it."
    )
    heartbeat_interval_seconds: float = Field(1.0, gt=0, description="Consumer heartbeat interval.")
    # --- redis read model
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("TIERSTREAM_REDIS_URL", "REDIS_URL"),
        description="Redis holding the support-routing read model.",
    )
    redis_prefix: str = Field("ts:", description="Prefix of every Redis key.")
    read_model_rewrite_unchanged: bool = Field(
        True, description="Every event decision rewrites the customer's read-model records, so `updated_at` "
        "(and the API's `staleness_seconds`) tells when the worker last decided. false: a policy decision "
        "elided because its inputs did not change (docs/performance.md, session 5) writes nothing, so Redis "
        "takes about half the writes, and `updated_at` tells when the record last changed or was last "
        "evaluated in full."
    )
    # --- http api
    api_host: str = Field("127.0.0.1", description="API bind address.")
    api_port: int = Field(8080, ge=0, le=65535, description="API port.")
    api_read_tokens: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated bearer tokens with read scope."
    )
    api_admin_tokens: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated bearer tokens with admin scope (admin implies read)."
    )
    log_level: str = Field("info", description="Log level of tierstream's own loggers.")

    @property
    def producer_batching(self) -> bool:
        """Whether producers may put many records in one batch: always on Kafka; on the embedded broker only
        with its end-offset correction (else one record per batch, the broker notes' work-around)."""
        return not self.embedded_broker or self.embedded_offset_correction

    @field_validator("policies", "shadow_policies", "api_read_tokens", "api_admin_tokens", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
