"""/metrics: counts read from the database at each scrape (so every web process reports the
same numbers). Labels are states and statuses only: no PHI, no addresses, no case numbers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from mailflow.app import App
from mailflow.db.models import (
    Case,
    CaseState,
    InboundMessage,
    MessageStatus,
    OutboundMessage,
    OutboxStatus,
    SlaEvent,
    utcnow,
)


class DatabaseCollector(Collector):
    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        with self.app.sessions() as session:
            cases = _pairs(session.execute(
                select(Case.state, func.count()).group_by(Case.state)).all())
            inbound = {(source, status): int(n) for source, status, n in session.execute(
                select(InboundMessage.source, InboundMessage.status, func.count())
                .group_by(InboundMessage.source, InboundMessage.status)
            ).all()}
            outbound = _pairs(session.execute(
                select(OutboundMessage.status, func.count()).group_by(OutboundMessage.status)
            ).all())
            oldest = session.execute(
                select(func.min(OutboundMessage.created_at))
                .where(OutboundMessage.status.in_((OutboxStatus.QUEUED, OutboxStatus.SENDING)))
            ).scalar_one_or_none()
            sla = _pairs(session.execute(
                select(SlaEvent.kind, func.count())
                .where(SlaEvent.kind.in_(("warning", "breach")))
                .group_by(SlaEvent.kind)
            ).all())
        by_state = GaugeMetricFamily("mailflow_cases", "Cases by state", labels=["state"])
        for state in CaseState.ALL:
            by_state.add_metric([state], cases.get(state, 0))
        yield by_state
        by_status = GaugeMetricFamily("mailflow_inbound_messages",
                                      "Inbound messages by door and status",
                                      labels=["source", "status"])
        for source in sorted({"smtp", "imap"} | {s for s, _ in inbound}):
            for status in MessageStatus.ALL:
                by_status.add_metric([source, status], inbound.get((source, status), 0))
        yield by_status
        out = GaugeMetricFamily("mailflow_outbound_messages", "Outbound email by status",
                                labels=["status"])
        for status in OutboxStatus.ALL:
            out.add_metric([status], outbound.get(status, 0))
        yield out
        yield GaugeMetricFamily(
            "mailflow_outbox_backlog", "Outbound email not yet delivered (queued or sending)",
            value=outbound.get(OutboxStatus.QUEUED, 0) + outbound.get(OutboxStatus.SENDING, 0))
        age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        yield GaugeMetricFamily("mailflow_outbox_oldest_age_seconds",
                                "Age of the oldest undelivered outbound email", value=age)
        yield GaugeMetricFamily("mailflow_outbox_dead",
                                "Outbound email given up after the last retry",
                                value=outbound.get(OutboxStatus.DEAD, 0))
        yield CounterMetricFamily("mailflow_sla_warnings", "SLA warnings given",
                                  value=sla.get("warning", 0))
        yield CounterMetricFamily("mailflow_sla_breaches", "SLA breaches",
                                  value=sla.get("breach", 0))


def make_registry(app: App) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(app))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def _pairs(result: Any) -> dict[Any, int]:
    return {key: int(count) for key, count in result}
