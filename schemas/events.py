"""Input event contract: one strict pydantic model per event kind.

Every input event is a flat JSON object with ``event_id``, ``customer_id``, ``occurred_at`` (RFC 3339 with
an offset: event time, not arrival time) and ``type``; the rest depends on ``type``. Models forbid unknown
fields so that a producer's typo is a dead letter with a reason, not a silently ignored field.

Invariants:
- money (``amount``, ``margin``) is :class:`decimal.Decimal` with at most :data:`MONEY_PLACES` decimal
  places, never a float, so sums are exact (state keeps it as integer units of 10^-MONEY_PLACES);
- ``occurred_at`` is timezone-aware and not before 1970 (:data:`EARLIEST_EVENT`); :func:`parse_event` also
  refuses timestamps further in the future than the allowed clock skew.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

#: Decimal places accepted for money. State stores money as integers of this scale (exact, fast).
MONEY_PLACES = 4

EVENT_TYPES: tuple[str, ...] = ("order", "payment", "login", "ticket", "profile")

#: The earliest ``occurred_at`` accepted. The state keeps event days as days since the Unix epoch (a login's
#: day goes into an unsigned field), and the horizon arithmetic of an event in years 1-4 overflowed: such an
#: event failed its whole batch, again after every restart. No customer event is that old; a producer
#: sending one has a bug, and gets a dead letter (reason ``schema``).
EARLIEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC)

Id = Annotated[str, Field(min_length=1, max_length=128)]
EventTime = Annotated[AwareDatetime, Field(ge=EARLIEST_EVENT, description="Event time: RFC 3339 with an offset, "
                                           "at or after 1970-01-01T00:00:00Z.")]
Money = Annotated[Decimal, Field(ge=0, decimal_places=MONEY_PLACES, allow_inf_nan=False)]
SignedMoney = Annotated[Decimal, Field(decimal_places=MONEY_PLACES, allow_inf_nan=False)]
Score10 = Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)]
AttributeValue = str | int | float | bool | None


class _Event(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Id
    customer_id: Id
    occurred_at: EventTime


class OrderEvent(_Event):
    """An order placed, or a cancellation / (partial) refund of an earlier ``order_id``."""

    type: Literal["order"]
    order_id: Id
    status: Literal["placed", "cancelled", "refunded"]
    amount: Money
    currency: Annotated[str, Field(min_length=3, max_length=3)] | None = None
    quantity: Annotated[int, Field(ge=0)] = 1
    product_line: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    margin: SignedMoney | None = None


class PaymentEvent(_Event):
    """A payment and its outcome; ``due_at``/``paid_at`` give punctuality."""

    type: Literal["payment"]
    payment_id: Id
    status: Literal["paid", "failed", "charged_back", "written_off"]
    amount: Money
    due_at: AwareDatetime | None = None
    paid_at: AwareDatetime | None = None


class LoginEvent(_Event):
    """The customer was active on a channel (app, web, store, phone, ...)."""

    type: Literal["login"]
    channel: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class TicketEvent(_Event):
    """A support ticket opened or closed; complaints are negative signals."""

    type: Literal["ticket"]
    ticket_id: Id
    action: Literal["opened", "closed"]
    category: Literal["inquiry", "complaint", "other"]
    severity: Annotated[int, Field(ge=1, le=4)] | None = None
    satisfaction: Annotated[int, Field(ge=1, le=5)] | None = None

    @model_validator(mode="after")
    def _satisfaction_on_close(self) -> TicketEvent:
        # A satisfaction score is what a customer gives when a ticket is resolved; on "opened" it is a
        # producer bug, and accepting it would skew average satisfaction.
        if self.satisfaction is not None and self.action != "closed":
            raise ValueError("satisfaction is only valid when action is 'closed'")
        return self


class ProfileAttributes(BaseModel):
    """Attributes no event can measure; known names are typed, others may be added (scalars only)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: Literal["person", "enterprise", "group"] | None = None
    size: str | None = None
    industry: str | None = None
    contract_plan: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    key_person_role: str | None = None
    group_class: str | None = None
    stage: str | None = None

    @model_validator(mode="after")
    def _extras_are_scalars(self) -> ProfileAttributes:
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, AttributeValue):  # type: ignore[arg-type]
                raise ValueError(f"attribute {name!r} must be a string, number, boolean or null")
        return self


class ProfileEvent(_Event):
    """Profile attributes and account-manager assessments (name -> score 0..10); latest value wins."""

    type: Literal["profile"]
    attributes: ProfileAttributes | None = None
    assessments: dict[Annotated[str, Field(min_length=1, max_length=64)], Score10] | None = None


Event = Annotated[
    OrderEvent | PaymentEvent | LoginEvent | TicketEvent | ProfileEvent,
    Field(discriminator="type"),
]
EVENT_MODELS: dict[str, type[_Event]] = {
    "order": OrderEvent,
    "payment": PaymentEvent,
    "login": LoginEvent,
    "ticket": TicketEvent,
    "profile": ProfileEvent,
}
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

AnyEvent = OrderEvent | PaymentEvent | LoginEvent | TicketEvent | ProfileEvent


class InvalidEvent(ValueError):
    """An input that is not a valid event. ``reason`` is a short machine-readable code for metrics and
    the dead-letter record; ``detail`` is the human explanation."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_event(raw: bytes | str, now: datetime, max_future_skew: timedelta) -> AnyEvent:
    """Validate one raw JSON event.

    Inputs: the raw bytes, the wall-clock ``now`` (aware) and the tolerated clock skew.
    Output: the typed event. Raises :class:`InvalidEvent` with reason ``invalid_json``,
    ``not_an_object``, ``unknown_type``, ``schema`` or ``future_timestamp``; never returns a partially valid event.
    """
    event = validate_event(raw)
    if event.occurred_at - now > max_future_skew:
        raise future_timestamp(event, max_future_skew)
    return event


def validate_event(raw: bytes | str) -> AnyEvent:
    """:func:`parse_event` without the clock check, which the caller then makes itself (the stream worker
    compares integer epoch microseconds: streams.batch); raises :class:`InvalidEvent` with every reason but
    ``future_timestamp``."""
    try:
        return EVENT_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        kinds = {e["type"] for e in errors}
        if "json_invalid" in kinds or "json_type" in kinds:
            raise InvalidEvent("invalid_json", errors[0]["msg"]) from None
        if kinds & {"union_tag_invalid", "union_tag_not_found"}:
            raise InvalidEvent("unknown_type", errors[0]["msg"]) from None
        if not errors[0]["loc"]:
            raise InvalidEvent("not_an_object", "an event must be a JSON object") from None
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5]
        )
        raise InvalidEvent("schema", detail) from None


def future_timestamp(event: AnyEvent, max_future_skew: timedelta) -> InvalidEvent:
    """The error of an event whose ``occurred_at`` is more than ``max_future_skew`` after the wall clock."""
    return InvalidEvent(
        "future_timestamp",
        f"occurred_at {event.occurred_at.isoformat()} is more than {max_future_skew} after now",
    )


def event_json_schemas() -> dict[str, dict]:
    """JSON Schema of every input event kind, plus the discriminated union under ``event``."""
    schemas = {name: model.model_json_schema() for name, model in EVENT_MODELS.items()}
    schemas["event"] = EVENT_ADAPTER.json_schema()
    return schemas
