"""What waits on a broker, read from the stage read model (ExchangeStage) in one query per
kind of task: requests to vet and shortlists to build in their cluster, host reviews of their
cluster's candidates, and scheduling that has gone quiet (past its reminder)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import exists
from sqlmodel import Session, col, select

from ce4big.domain import Role, Stage
from ce4big.models import (
    Exchange,
    ExchangeCandidate,
    ExchangeStage,
    Organisation,
    User,
    as_utc,
)
from ce4big.settings import Settings


class Task(StrEnum):
    VET = "vet"
    SHORTLIST = "shortlist"
    HOST_REVIEW = "host_review"
    SCHEDULING = "scheduling"


@dataclass(frozen=True, slots=True)
class InboxItem:
    task: Task
    exchange_id: int
    title: str
    home_cluster: str
    since: datetime
    deadline: datetime | None
    overdue: bool


def broker_inbox(
    *, session: Session, user: User, settings: Settings, now: datetime
) -> list[InboxItem]:
    """Oldest deadline first; work without a deadline last, oldest first."""
    if user.role != Role.BROKER or user.cluster_id is None:
        return []
    cluster = user.cluster_id
    open_spells = (
        select(ExchangeStage, Exchange)
        .join(Exchange, col(Exchange.id) == ExchangeStage.exchange_id)
        .where(col(ExchangeStage.left_at).is_(None))
    )
    home = open_spells.where(Exchange.home_cluster == cluster)
    pending_here = exists().where(
        col(ExchangeCandidate.exchange_id) == col(Exchange.id),
        col(ExchangeCandidate.shortlist_position).is_not(None),
        col(ExchangeCandidate.host_decision).is_(None),
        col(ExchangeCandidate.organisation_id).in_(
            select(Organisation.id).where(Organisation.cluster_id == cluster)
        ),
    )
    # Scheduling shows once its reminder has gone out without a slot being picked.
    reminder_days = settings.scheduling_reminder_days * 86400
    quiet_since = now - timedelta(seconds=settings.scaled_seconds(reminder_days))
    queries = (
        (Task.VET, home.where(ExchangeStage.stage == Stage.VETTING)),
        (Task.SHORTLIST, home.where(ExchangeStage.stage == Stage.MATCHING)),
        (
            Task.HOST_REVIEW,
            open_spells.where(col(ExchangeStage.stage) == Stage.HOST_REVIEW, pending_here),
        ),
        (
            Task.SCHEDULING,
            home.where(
                ExchangeStage.stage == Stage.SCHEDULING,
                col(ExchangeStage.entered_at) <= quiet_since,
            ),
        ),
    )
    items = []
    for task, query in queries:
        for spell, exchange in session.exec(query):
            assert exchange.id is not None
            since = as_utc(spell.entered_at)
            deadline = as_utc(spell.deadline_at)
            assert since is not None
            items.append(
                InboxItem(
                    task=task,
                    exchange_id=exchange.id,
                    title=exchange.title,
                    home_cluster=exchange.home_cluster,
                    since=since,
                    deadline=deadline,
                    overdue=deadline is not None and deadline <= now,
                )
            )
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(items, key=lambda i: (i.deadline or far, i.since))
