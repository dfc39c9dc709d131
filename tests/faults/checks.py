"""What must hold once the exchanges of a fault run are over, read from SQL and from what the
SMTP server received: each exchange at the end its decisions call for, its timeline holding
each transition of its path exactly once, and each logical e-mail received exactly once (by
Message-ID) with the link that the product holds for it."""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, Table
from sqlalchemy import select as sa_select
from sqlmodel import Session, SQLModel, col, select

from bench.drive import HOME_BROKER, HOST_BROKERS, SME, Delivery, Mailbox, Path, partner_email
from ce4big import rollup, tallies
from ce4big.models import (
    ActionToken,
    EmailLog,
    Exchange,
    ExchangeEvent,
)
from ce4big.rollup import Durations
from ce4big.security import hash_token
from tests.faults.drive import Plan

# The transitions each path records, in order (stage entries with their stage). Two are there
# or not depending on timing alone: scheduling is entered again waiting on the SME unless its
# slots came in before the workflow got that far, and again waiting on the partner unless
# their pick did.
OPTIONAL = "?"
EVENTS: dict[Path, list[str]] = {
    Path.COMPLETED: [
        "submitted",
        "stage_entered:vetting",
        "vetting_approve",
        "stage_entered:matching",
        "candidates_found",
        "shortlisted",
        "stage_entered:host_review",
        "host_review_done",
        "stage_entered:introduction",
        "introduction_accepted",
        "stage_entered:scheduling",
        "stage_entered:scheduling" + OPTIONAL,
        "slots_proposed",
        "stage_entered:scheduling" + OPTIONAL,
        "stage_entered:meeting_scheduled",
        "meeting_scheduled",
        "meeting_held",
        "stage_entered:follow_up",
        "stage_entered:follow_up",
        "survey_answered",
        "survey_answered",
        "survey_closed",
        "stage_entered:closed",
        "closed",
    ],
    Path.REJECTED: [
        "submitted",
        "stage_entered:vetting",
        "vetting_reject",
        "stage_entered:closed",
        "closed",
    ],
    Path.WITHDRAWN: [
        "submitted",
        "stage_entered:vetting",
        "vetting_approve",
        "stage_entered:matching",
        "candidates_found",
        "stage_entered:closed",
        "closed",
    ],
}

# The logical e-mails of each path: (kind, who), each once.
EMAILS: dict[Path, list[tuple[str, str]]] = {
    Path.COMPLETED: [
        ("request_received", "sme"),
        ("vetting_needed", "home_broker"),
        ("request_approved", "sme"),
        ("shortlist_needed", "home_broker"),
        ("host_review_request", "host_broker"),
        ("introduction_request", "partner"),
        ("introduction_made", "sme"),
        ("introduction_made", "partner"),
        ("slots_proposed", "partner"),
        ("meeting_confirmed", "sme"),
        ("meeting_confirmed", "partner"),
        ("meeting_confirmed", "home_broker"),
        ("meeting_reminder", "sme"),
        ("meeting_reminder", "partner"),
        ("meeting_reminder", "home_broker"),
        ("survey_invitation", "sme"),
        ("survey_invitation", "partner"),
    ],
    Path.REJECTED: [
        ("request_received", "sme"),
        ("vetting_needed", "home_broker"),
        ("request_rejected", "sme"),
    ],
    Path.WITHDRAWN: [
        ("request_received", "sme"),
        ("vetting_needed", "home_broker"),
        ("request_approved", "sme"),
        ("shortlist_needed", "home_broker"),
        ("exchange_closed", "sme"),
        ("exchange_closed", "home_broker"),
    ],
}


def follows_path(timeline: list[str], path: list[str]) -> bool:
    """Each transition of the path once, in its order; an optional one at most once."""
    position = 0
    for step in path:
        name = step.removesuffix(OPTIONAL)
        present = position < len(timeline) and timeline[position] == name
        if not present and not step.endswith(OPTIONAL):
            return False
        position += int(present)
    return position == len(timeline)


def _address(plan: Plan, who: str) -> str:
    if who == "sme":
        return SME
    if who == "home_broker":
        return HOME_BROKER
    assert plan.partner is not None and plan.partner_cluster is not None, plan
    if who == "host_broker":
        return HOST_BROKERS[plan.partner_cluster]
    return partner_email(plan.partner)


@dataclass
class Verdict:
    exchanges: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    transitions: int = 0
    emails: int = 0
    received: int = 0
    duplicates: int = 0
    # The idempotency keys of the e-mails whose copies were let through (verify's
    # `copies_allowed`).
    copies: list[str] = field(default_factory=list)
    links: int = 0
    # The report rollups' counts (facts, tallies, spells by bucket) checked against a rebuild.
    figures: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.problems.append(text)


def ended_count(engine: Engine, ids: list[int]) -> int:
    """Exchanges with an outcome: the last record of a lifecycle."""
    with Session(engine) as session:
        rows = session.exec(select(Exchange.outcome).where(col(Exchange.id).in_(ids))).all()
    return sum(1 for outcome in rows if outcome is not None)


def stages_now(engine: Engine, ids: list[int]) -> Counter[str]:
    with Session(engine) as session:
        rows = session.exec(select(Exchange.status).where(col(Exchange.id).in_(ids))).all()
    return Counter(str(status) for status in rows)


def verify(
    engine: Engine, mailbox: Mailbox, plans: list[Plan], *, copies_allowed: int = 0
) -> Verdict:
    """`copies_allowed`: extra copies of one Message-ID let through, when they all carry the
    same link (the one the product holds). Only for faults that can strike between the SMTP
    server's acceptance of an e-mail and the e-mail log's record of it (a killed worker, a
    stopped database): no sender can make those two one step, so the product sends the same
    message again, Message-ID and link unchanged, for the receiving side to recognise."""
    verdict = Verdict(exchanges=len(plans))
    for plan in plans:
        if plan.error:
            verdict.problem(plan.error)
    planned = {p.exchange_id: p for p in plans if p.exchange_id is not None}
    if len(planned) != len(plans):
        verdict.problem(f"{len(plans) - len(planned)} exchanges were never created")
    ids = list(planned)
    with Session(engine) as session:
        exchanges = {
            e.id: e for e in session.exec(select(Exchange).where(col(Exchange.id).in_(ids)))
        }
        events = session.exec(
            select(ExchangeEvent)
            .where(col(ExchangeEvent.exchange_id).in_(ids))
            .order_by(col(ExchangeEvent.id))
        ).all()
        logs = session.exec(select(EmailLog).where(col(EmailLog.exchange_id).in_(ids))).all()
        tokens = {
            t.issue_key: t
            for t in session.exec(select(ActionToken).where(col(ActionToken.exchange_id).in_(ids)))
        }

    timelines: dict[int, list[str]] = {i: [] for i in ids}
    for event in events:
        stage = f":{event.detail.get('stage', '')}" if event.kind == "stage_entered" else ""
        timelines[event.exchange_id].append(event.kind + stage)
    verdict.transitions = len(events)
    for exchange_id, plan in planned.items():
        exchange = exchanges.get(exchange_id)
        end = f"{exchange.status}/{exchange.outcome}" if exchange else "missing"
        verdict.outcomes[end] += 1
        if end != f"closed/{plan.path.value}":
            verdict.problem(f"exchange {exchange_id} ({plan.path}) ended {end}")
        if not follows_path(timelines[exchange_id], EVENTS[plan.path]):
            verdict.problem(
                f"exchange {exchange_id} ({plan.path}) timeline {timelines[exchange_id]}, "
                f"expected {EVENTS[plan.path]}"
            )

    _check_emails(verdict, planned, logs, tokens, mailbox, copies_allowed)
    _check_figures(verdict, engine)
    return verdict


def _figures(connection: Connection) -> tuple[Counter[tuple[object, ...]], dict[str, float]]:
    """The report rollups, counted: (what, key) -> count, and their sums beside."""
    counts: Counter[tuple[object, ...]] = Counter()
    sums = {"facts": 0.0, "tallies": 0.0, "hours": 0.0, "waited": 0.0}
    for fact in connection.execute(sa_select(table("reportfact"))).mappings():
        counts["fact", fact["source"], fact["fact"], fact["partner_cluster"]] += 1
        sums["facts"] += fact["value"]
    for tally in connection.execute(sa_select(table("reporttally"))).mappings():
        counts["tally", tally["fact"], tally["partner_cluster"], tally["month"]] += tally["count"]
        sums["tallies"] += tally["total"]
    for row in connection.execute(sa_select(table("stagerollup"))).mappings():
        durations = Durations()
        durations.merge(row["durations"])
        for bucket in durations.counts.nonzero()[0]:
            key = ("spells", row["stage"], row["home_cluster"], row["left_month"], int(bucket))
            counts[key] += int(durations.counts[bucket])
        sums["hours"] += float(durations.hours.sum())
        sums["waited"] += sum(row["waited"].values())
    return +counts, sums


def table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


def _check_figures(verdict: Verdict, engine: Engine) -> None:
    """What the activities added up for the reports as they recorded, retried attempts and all,
    is what a rebuild from the recorded rows finds (rebuilt in a transaction rolled back)."""
    with engine.connect() as connection, connection.begin() as transaction:
        kept, kept_sums = _figures(connection)
        rollup.rebuild(connection)
        tallies.rebuild(connection)
        rebuilt, rebuilt_sums = _figures(connection)
        transaction.rollback()
    verdict.figures = sum(kept.values())
    if not kept or kept != rebuilt:
        differ = sorted(set((kept - rebuilt) | (rebuilt - kept)), key=str)[:5]
        verdict.problem(f"report figures differ from a rebuild, first at {differ}")
    for name, total in kept_sums.items():
        if abs(total - rebuilt_sums[name]) > 1e-6 * max(1.0, abs(total)):
            verdict.problem(f"report {name}: {total} kept, {rebuilt_sums[name]} rebuilt")


def _check_emails(
    verdict: Verdict,
    planned: dict[int, Plan],
    logs: Sequence[EmailLog],
    tokens: dict[str, ActionToken],
    mailbox: Mailbox,
    copies_allowed: int,
) -> None:
    markers = {p.marker for p in planned.values()}
    by_exchange: dict[int, list[EmailLog]] = {i: [] for i in planned}
    for row in logs:
        assert row.exchange_id is not None
        by_exchange[row.exchange_id].append(row)
    verdict.emails = len(logs)
    for exchange_id, plan in planned.items():
        logged = Counter((row.kind, row.recipient.lower()) for row in by_exchange[exchange_id])
        if plan.path == Path.COMPLETED and plan.partner is None:
            verdict.problem(f"exchange {exchange_id}: the driver never learnt its partner")
            continue
        wanted = Counter((kind, _address(plan, who)) for kind, who in EMAILS[plan.path])
        if logged != wanted:
            missing = sorted((wanted - logged).elements())
            extra = sorted((logged - wanted).elements())
            verdict.problem(
                f"exchange {exchange_id} ({plan.path}) logical e-mails: missing {missing}, "
                f"extra {extra}"
            )
        unsent = [(r.kind, r.recipient, r.status, r.error) for r in by_exchange[exchange_id]]
        unsent = [u for u in unsent if u[2] != "sent"]
        if unsent:
            verdict.problem(f"exchange {exchange_id} e-mails not sent: {unsent}")

    ours = [d for d in mailbox.deliveries if d.marker in markers]
    verdict.received = len(ours)
    copies = Counter(d.message_id for d in ours)
    received: dict[str, list[Delivery]] = {}
    for delivery in ours:
        received.setdefault(delivery.message_id, []).append(delivery)
    logged_ids = {row.message_id: row for row in logs}
    for message_id, count in sorted(copies.items()):
        if message_id not in logged_ids:
            verdict.problem(f"received {message_id} that no logical e-mail has")
        if count > 1:
            verdict.duplicates += count - 1
            twin = logged_ids.get(message_id)
            links = [d.token[:8] + "…" if d.token else None for d in received[message_id]]
            described = (
                f"{message_id} received {count} times "
                f"({twin.idempotency_key if twin else '?'}, links {links})"
            )
            same_link = len({d.token for d in received[message_id]}) == 1
            if count - 1 <= copies_allowed and same_link and twin is not None:
                verdict.copies.append(twin.idempotency_key)
            else:
                verdict.problem(described)
    for row in logs:
        deliveries = received.get(row.message_id, [])
        if not deliveries:
            verdict.problem(f"{row.idempotency_key} ({row.message_id}) never arrived")
            continue
        token = tokens.get(row.idempotency_key)
        for delivery in deliveries:
            if (delivery.kind, delivery.recipient) != (row.kind, row.recipient.lower()):
                verdict.problem(
                    f"{row.message_id} arrived as {delivery.kind} to {delivery.recipient}, "
                    f"logged as {row.kind} to {row.recipient}"
                )
            if token is None:
                if delivery.token is not None:
                    verdict.problem(f"{row.idempotency_key} carries a link the product lacks")
                continue
            if delivery.token is None:
                verdict.problem(f"{row.idempotency_key} arrived without its link")
            elif hash_token(delivery.token) != token.token_hash:
                verdict.problem(
                    f"{row.idempotency_key}: the link it arrived with is not the one the "
                    "product holds (dead link)"
                )
            else:
                verdict.links += 1
