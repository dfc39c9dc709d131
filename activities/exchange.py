"""Activities of the exchange workflow: candidates, notifications with action links, tokens,
candidate and survey records. Each is idempotent: a retried attempt repeats nothing."""

import asyncio
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ActivityConfig

from activities.email import EmailActivities, SendEmailInput
from activities.records import RECORD_EVENT_OPTIONS
from activities.types import (
    CandidateEmail,
    ChangesRequestedEmail,
    EmailData,
    ExchangeClosedEmail,
    FindCandidatesInput,
    FindCandidatesOutput,
    MeetingCancelledEmail,
    MeetingRescheduledEmail,
    NotifyInput,
    NotifyOutput,
    OutcomeWaveEmail,
    PartnerDeclinedEmail,
    RecordSurveyInput,
    RequestRejectedEmail,
    RevokeTokensInput,
    SchedulingStuckEmail,
    ShortlistNeededEmail,
    UpdateCandidateInput,
)
from ce4big.catalogue.matching import rank_candidates
from ce4big.db import session_scope
from ce4big.domain import CLUSTERS_BY_ID, Outcome, Role
from ce4big.exchanges import match_request_for
from ce4big.gdpr import ERASED_DOMAIN
from ce4big.i18n import negotiate_language
from ce4big.lifecycle import PARTNER, REQUESTER, CandidateInfo
from ce4big.models import (
    ActionToken,
    EmailLog,
    Exchange,
    ExchangeCandidate,
    Organisation,
    SurveyResponse,
    User,
    utcnow,
)
from ce4big.security import derived_token
from ce4big.settings import Settings
from ce4big.tallies import set_facts, survey_facts, survey_source
from emails.contexts import KINDS, choose_timezone

MAX_CANDIDATES = 20
# What an action link's token is derived for (with SECRET_KEY and the e-mail's key).
LINK_PURPOSE = "action-link"
SUMMARY_CHARS = 600

# How the workflows call each activity, declared beside it.
FIND_CANDIDATES_OPTIONS = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=2),
    retry_policy=RetryPolicy(
        maximum_interval=timedelta(minutes=1), non_retryable_error_types=["UnknownExchange"]
    ),
)
UPDATE_CANDIDATE_OPTIONS = RECORD_EVENT_OPTIONS
REVOKE_TOKENS_OPTIONS = RECORD_EVENT_OPTIONS
RECORD_SURVEY_OPTIONS = RECORD_EVENT_OPTIONS
# Mail keeps retrying through an SMTP outage for a day; a permanent refusal stops at once.
# notify heartbeats before each e-mail: a worker that dies is noticed within the heartbeat
# timeout (longer than one e-mail takes), and many slow recipients only lengthen the run, which
# the start-to-close timeout bounds. Neither is compared on replay: running exchanges take them.
NOTIFY_OPTIONS = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=30),
    heartbeat_timeout=timedelta(minutes=2),
    schedule_to_close_timeout=timedelta(days=1),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=2),
        maximum_interval=timedelta(minutes=10),
        non_retryable_error_types=["UnknownExchange", "PermanentEmailError", "EmailContextError"],
    ),
)


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str
    language: str
    timezone: str
    side: str  # requester | partner | broker | manager
    user_id: int | None = None
    organisation_id: str | None = None
    cluster: str | None = None
    role: str = PARTNER


def _unknown_exchange(exchange_id: int) -> ApplicationError:
    return ApplicationError(
        f"exchange {exchange_id} does not exist", type="UnknownExchange", non_retryable=True
    )


def _user_recipient(user: User, side: str) -> Recipient:
    cluster = CLUSTERS_BY_ID.get(user.cluster_id or "")
    return Recipient(
        email=user.email,
        name=user.name,
        language=negotiate_language(user.language, cluster.language if cluster else None),
        timezone=choose_timezone(user.timezone, cluster.timezone if cluster else None),
        side=side,
        user_id=user.id,
        organisation_id=user.organisation_id,
        cluster=user.cluster_id,
        role=user.role,
    )


def _organisation_recipient(organisation: Organisation) -> Recipient | None:
    if not organisation.contact_email:
        return None
    cluster = CLUSTERS_BY_ID.get(organisation.cluster_id)
    return Recipient(
        email=organisation.contact_email,
        name=organisation.contact_name,
        language=negotiate_language(None, cluster.language if cluster else None),
        timezone=choose_timezone(None, cluster.timezone if cluster else None),
        side=PARTNER,
        organisation_id=organisation.id,
        cluster=organisation.cluster_id,
    )


def resolve_audience(*, session: Session, exchange: Exchange, audience: str) -> list[Recipient]:
    if audience == REQUESTER:
        user = session.get(User, exchange.requester_id)
        return [_user_recipient(user, REQUESTER)] if user and user.is_active else []
    if audience.startswith("partner:"):
        organisation = session.get(Organisation, audience.removeprefix("partner:"))
        recipient = _organisation_recipient(organisation) if organisation else None
        return [recipient] if recipient else []
    if audience == "home_brokers" or audience.startswith("host_brokers:"):
        cluster = exchange.home_cluster if audience == "home_brokers" else audience.split(":")[1]
        query = select(User).where(User.role == Role.BROKER, User.cluster_id == cluster)
        return [_user_recipient(u, "broker") for u in session.exec(query.where(User.is_active))]
    if audience == "managers":
        query = select(User).where(
            User.role == Role.MANAGER,
            (col(User.cluster_id) == exchange.home_cluster) | col(User.cluster_id).is_(None),
        )
        return [_user_recipient(u, "manager") for u in session.exec(query.where(User.is_active))]
    raise ApplicationError(f"unknown audience {audience!r}", non_retryable=True)


class ExchangeActivities:
    def __init__(self, engine: Engine, settings: Settings, email: EmailActivities) -> None:
        self._engine = engine
        self._settings = settings
        self._email = email

    # ---------------------------------------------------------------- candidates

    @activity.defn(name="find_candidates")
    def find_candidates(self, data: FindCandidatesInput) -> FindCandidatesOutput:
        with session_scope(self._engine) as session:
            exchange = session.get(Exchange, data.exchange_id)
            if exchange is None:
                raise _unknown_exchange(data.exchange_id)
            request = match_request_for(exchange)
            ranked = rank_candidates(
                session=session,
                request=request,
                top=MAX_CANDIDATES + len(data.exclude),
                settings=self._settings,
            )
            ranked = [c for c in ranked if c.organisation_id not in data.exclude][:MAX_CANDIDATES]
            organisations = {
                o.id: o
                for o in session.exec(
                    select(Organisation).where(
                        col(Organisation.id).in_([c.organisation_id for c in ranked])
                    )
                )
            }
            stored = {
                c.organisation_id: c
                for c in session.exec(
                    select(ExchangeCandidate).where(ExchangeCandidate.exchange_id == exchange.id)
                )
            }
            found = []
            for rank, candidate in enumerate(ranked, start=1):
                organisation = organisations[candidate.organisation_id]
                row = stored.get(candidate.organisation_id) or ExchangeCandidate(
                    exchange_id=data.exchange_id,
                    organisation_id=candidate.organisation_id,
                    rank=rank,
                    score=candidate.score,
                )
                row.rank, row.score, row.reasons = rank, candidate.score, list(candidate.reasons)
                row.updated_at = utcnow()
                session.add(row)
                found.append(
                    CandidateInfo(
                        organisation_id=organisation.id,
                        name=organisation.name,
                        cluster=organisation.cluster_id,
                        score=candidate.score,
                        reasons=list(candidate.reasons),
                    )
                )
        return FindCandidatesOutput(candidates=found)

    @activity.defn(name="update_candidate")
    def update_candidate(self, data: UpdateCandidateInput) -> None:
        with session_scope(self._engine) as session:
            row = session.exec(
                select(ExchangeCandidate).where(
                    ExchangeCandidate.exchange_id == data.exchange_id,
                    ExchangeCandidate.organisation_id == data.organisation_id,
                )
            ).first()
            if row is None:
                raise ApplicationError(
                    f"{data.organisation_id} is not a candidate of exchange {data.exchange_id}",
                    type="UnknownExchange",
                    non_retryable=True,
                )
            for name in ("shortlist_position", "host_decision", "intro_status", "intro_reason"):
                value = getattr(data, name)
                if value is not None:
                    setattr(row, name, value)
            row.updated_at = utcnow()
            session.add(row)

    # ---------------------------------------------------------------- tokens

    @activity.defn(name="revoke_tokens")
    def revoke_tokens(self, data: RevokeTokensInput) -> int:
        statement = (
            update(ActionToken)
            .where(
                col(ActionToken.exchange_id) == data.exchange_id,
                col(ActionToken.used_at).is_(None),
                col(ActionToken.revoked_at).is_(None),
            )
            .values(revoked_at=utcnow())
        )
        if data.action is not None:
            statement = statement.where(col(ActionToken.action) == data.action)
        with session_scope(self._engine) as session:
            return int(session.execute(statement).rowcount or 0)  # type: ignore[attr-defined]

    def _issue_token(
        self,
        *,
        session: Session,
        key: str,
        exchange_id: int,
        recipient: Recipient,
        action: str,
        subject: str | None,
    ) -> str:
        """The token of this e-mail, derived from its idempotency key: an attempt that delivered
        the e-mail but failed before recording it is retried with the same link (and the same
        Message-ID), so whichever copy the recipient keeps works. It expires counting from the
        first attempt."""
        token = derived_token(
            secret=self._settings.secret_key.get_secret_value(), purpose=LINK_PURPOSE, key=key
        )
        lifetime = max(
            3600.0, self._settings.scaled_seconds(self._settings.action_token_days * 86400)
        )
        row = session.exec(select(ActionToken).where(ActionToken.issue_key == key)).first()
        row = row or ActionToken(
            issue_key=key,
            exchange_id=exchange_id,
            recipient=recipient.email,
            action=action,
            token_hash=token.hash,
            expires_at=utcnow() + timedelta(seconds=lifetime),
        )
        # Rows issued with a random token before keys derived them take the derived one.
        row.token_hash = token.hash
        row.payload = {
            "side": recipient.side,
            "role": recipient.role,
            "user_id": recipient.user_id,
            "organisation_id": recipient.organisation_id,
            "cluster": recipient.cluster,
            "language": recipient.language,
            "timezone": recipient.timezone,
            # The candidate organisation an e-mail is about (host review, introduction).
            "subject": subject,
        }
        session.add(row)
        return token.plain

    # ---------------------------------------------------------------- e-mail

    @activity.defn(name="notify")
    async def notify(self, data: NotifyInput) -> NotifyOutput:
        """One e-mail per recipient of the audiences, each once (keyed by step and address)."""
        plans = await asyncio.to_thread(self._plan_notification, data)
        sent = 0
        failed = []
        for done, send in enumerate(plans):
            # Alive, and how far: e-mails before this one are sent (a retry skips them anyway).
            activity.heartbeat(done, len(plans))
            try:
                result = await self._email.send_email(send)
            except ApplicationError as err:
                if not err.non_retryable:
                    raise
                # A permanent refusal is recorded by the sender; the others still go out.
                failed.append(send.to_email)
                continue
            sent += int(result.sent)
        return NotifyOutput(sent=sent, failed=failed)

    def _plan_notification(self, data: NotifyInput) -> list[SendEmailInput]:
        data = replace(data, email=email_data(data), extra={})
        if data.email is not None and data.email.kind != data.kind:
            raise ApplicationError(
                f"{data.kind} e-mail given the data of {data.email.kind}",
                type="EmailContextError",
                non_retryable=True,
            )
        with session_scope(self._engine) as session:
            exchange = session.get(Exchange, data.exchange_id)
            if exchange is None:
                raise _unknown_exchange(data.exchange_id)
            recipients: dict[str, Recipient] = {}
            for audience in data.audiences:
                for recipient in resolve_audience(
                    session=session, exchange=exchange, audience=audience
                ):
                    # An erased person's pseudonym is no address: nothing is sent to it.
                    if not recipient.email.lower().endswith("@" + ERASED_DOMAIN):
                        recipients.setdefault(recipient.email.lower(), recipient)
            if not recipients:
                activity.logger.warning(
                    "no recipient for %s of exchange %s", data.kind, data.exchange_id
                )
            facts = ExchangeFacts.load(session=session, exchange=exchange, data=data)
            already_sent = set(
                session.exec(
                    select(EmailLog.idempotency_key).where(
                        col(EmailLog.idempotency_key).in_(
                            [f"{data.step_key}:{e}" for e in recipients]
                        ),
                        EmailLog.status == "sent",
                    )
                )
            )
            plans = []
            for address, recipient in recipients.items():
                key = f"{data.step_key}:{address}"
                if key in already_sent:
                    continue
                action_url = None
                if data.action is not None:
                    token = self._issue_token(
                        session=session,
                        key=key,
                        exchange_id=data.exchange_id,
                        recipient=recipient,
                        action=data.action,
                        subject=organisation_of(data.email),
                    )
                    action_url = f"{self._settings.base_url}/t/{token}"
                plans.append(
                    SendEmailInput(
                        idempotency_key=key,
                        kind=data.kind,
                        to_email=recipient.email,
                        to_name=recipient.name,
                        language=recipient.language,
                        timezone=recipient.timezone,
                        context=facts.context(
                            data=data, recipient=recipient, action_url=action_url
                        ),
                        exchange_id=data.exchange_id,
                        invite=facts.invite(data=data),
                    )
                )
            return plans

    # ---------------------------------------------------------------- survey

    @activity.defn(name="record_survey")
    def record_survey(self, data: RecordSurveyInput) -> None:
        with session_scope(self._engine) as session:
            row = session.exec(
                select(SurveyResponse).where(
                    SurveyResponse.exchange_id == data.exchange_id,
                    SurveyResponse.respondent == data.respondent,
                    SurveyResponse.wave == data.wave,
                )
            ).first() or SurveyResponse(
                exchange_id=data.exchange_id,
                respondent=data.respondent,
                wave=data.wave,
                outcome=data.outcome,
            )
            row.outcome = data.outcome
            row.satisfaction = data.satisfaction
            row.recommend = data.recommend
            row.agreement_type = data.agreement_type
            row.comment = data.comment
            row.at = utcnow()
            session.add(row)
            exchange = session.get(Exchange, data.exchange_id)
            if data.wave == "survey" and exchange is not None:
                # An answer given again replaces the earlier one in the figures too.
                set_facts(
                    session,
                    source=survey_source(data.exchange_id, data.respondent),
                    exchange=exchange,
                    at=row.at,
                    facts=survey_facts(
                        data.respondent, data.outcome, data.satisfaction, data.recommend
                    ),
                )


@dataclass
class ExchangeFacts:
    """What the e-mails of one exchange say about it, loaded once per notification."""

    exchange: Exchange
    requester_organisation: str
    requester_name: str
    requester_email: str
    home_cluster: str
    partner: Organisation | None
    brokers: list[User]

    @classmethod
    def load(cls, *, session: Session, exchange: Exchange, data: NotifyInput) -> "ExchangeFacts":
        requester = session.get(User, exchange.requester_id)
        organisation = (
            session.get(Organisation, exchange.organisation_id)
            if exchange.organisation_id
            else None
        )
        partner_id = organisation_of(data.email)
        if partner_id is None:
            # Slot, meeting and survey steps name no organisation: the partner is whoever
            # accepted the introduction (their invite, their name in the e-mail).
            partner_id = session.exec(
                select(ExchangeCandidate.organisation_id).where(
                    ExchangeCandidate.exchange_id == exchange.id,
                    ExchangeCandidate.intro_status == "accepted",
                )
            ).first()
        partner = session.get(Organisation, partner_id) if partner_id else None
        brokers = list(
            session.exec(
                select(User).where(
                    User.role == Role.BROKER,
                    User.cluster_id == exchange.home_cluster,
                    col(User.is_active),
                )
            )
        )
        cluster = CLUSTERS_BY_ID[exchange.home_cluster]
        return cls(
            exchange=exchange,
            requester_organisation=organisation.name if organisation else "",
            requester_name=requester.name if requester else "",
            requester_email=requester.email if requester else "",
            home_cluster=cluster.name,
            partner=partner,
            brokers=brokers,
        )

    def context(
        self, *, data: NotifyInput, recipient: Recipient, action_url: str | None
    ) -> dict[str, Any]:
        exchange = self.exchange
        partner_name = self.partner.name if self.partner else ""
        values: dict[str, Any] = {
            "recipient_name": recipient.name,
            "exchange_id": exchange.id,
            "exchange_title": exchange.title,
            "requester_organisation": self.requester_organisation or self.requester_name,
            "home_cluster": self.home_cluster,
            "action_url": action_url,
            "respond_by": data.deadline.isoformat() if data.deadline else None,
            "waiting_since": (data.since or utcnow()).isoformat(),
            "requester_name": self.requester_name,
            "summary": _summary(exchange.description),
            "cooperation_type": exchange.cooperation_type,
            "note": "",
            "reason": "",
            "candidate_count": 0,
            "partner_organisation": partner_name,
            "host_cluster": CLUSTERS_BY_ID[self.partner.cluster_id].name if self.partner else "",
            "declined_organisation": partner_name,
            "next_step": "next_candidate",
            "outcome": "",
            "rounds": 0,
            "months": 6,
        }
        values.update(_email_fields(data.email))
        if data.kind == "introduction_made":
            values.update(self._introduction_sides(recipient))
        proposal = data.proposal
        if proposal is not None:
            values.update(
                proposed_by=self.requester_organisation
                if proposal.by == REQUESTER
                else partner_name,
                slots=[{"start": s.start, "end": s.end} for s in proposal.slots],
                timezone=proposal.timezone,
                mode=proposal.mode,
                location=proposal.location,
                counter_proposal=proposal.round > 1,
            )
        meeting = data.meeting
        if meeting is not None:
            values.update(
                start=meeting.start,
                end=meeting.end,
                timezone=meeting.timezone,
                mode=meeting.mode,
                location=meeting.location,
                meeting_start=meeting.start,
            )
            values.setdefault("previous_start", meeting.start)
        return _only_fields(data.kind, values)

    def _introduction_sides(self, recipient: Recipient) -> dict[str, Any]:
        partner = self.partner
        assert partner is not None
        if recipient.side == PARTNER:
            return {
                "recipient_side": PARTNER,
                "counterpart_organisation": self.requester_organisation,
                "counterpart_name": self.requester_name,
                "counterpart_email": self.requester_email,
                "counterpart_website": "",
            }
        return {
            "recipient_side": REQUESTER,
            "counterpart_organisation": partner.name,
            "counterpart_name": partner.contact_name,
            "counterpart_email": partner.contact_email,
            "counterpart_website": partner.website,
        }

    def invite(self, *, data: NotifyInput) -> dict[str, Any] | None:
        meeting = data.meeting
        if data.invite is None or meeting is None:
            return None
        attendees = [{"email": self.requester_email, "name": self.requester_name}]
        if self.partner is not None and self.partner.contact_email:
            attendees.append(
                {"email": self.partner.contact_email, "name": self.partner.contact_name}
            )
        attendees += [{"email": b.email, "name": b.name} for b in self.brokers]
        # The workflow raises the sequence for every invite it sends, cancellations included.
        sequence = meeting.sequence
        partner = self.partner.name if self.partner else ""
        return {
            "method": data.invite,
            "sequence": sequence,
            "start": meeting.start,
            "end": meeting.end,
            "timezone": meeting.timezone,
            "summary": f"CE4BIG: {self.requester_organisation} / {partner}",
            "description": self.exchange.title,
            "location": meeting.location,
            "attendees": [a for a in attendees if a["email"]],
        }


def email_data(data: NotifyInput) -> EmailData | None:
    """The kind's typed data; for a notify scheduled before there was any, read from `extra`."""
    if data.email is not None or not data.extra:
        return data.email
    extra = data.extra
    organisation_id = str(extra.get("organisation_id") or "")
    reason = str(extra.get("reason") or "")
    match data.kind:
        case "request_rejected":
            return RequestRejectedEmail(reason=reason)
        case "changes_requested" | "changes_reminder" as kind:
            return ChangesRequestedEmail(note=str(extra.get("note") or ""), kind=kind)
        case "shortlist_needed":
            return ShortlistNeededEmail(candidate_count=int(extra.get("candidate_count") or 0))
        case (
            "host_review_request"
            | "host_review_reminder"
            | "introduction_request"
            | "introduction_reminder"
            | "introduction_made"
        ) as kind if organisation_id:
            return CandidateEmail(organisation_id=organisation_id, kind=kind)
        case "partner_declined" if organisation_id:
            last = extra.get("next_step") == "back_to_matching"
            return PartnerDeclinedEmail(
                organisation_id=organisation_id,
                next_step="back_to_matching" if last else "next_candidate",
                reason=reason,
            )
        case "scheduling_stuck":
            return SchedulingStuckEmail(rounds=int(extra.get("rounds") or 0))
        case "meeting_rescheduled" if extra.get("previous_start"):
            return MeetingRescheduledEmail(previous_start=str(extra["previous_start"]))
        case "meeting_cancelled":
            return MeetingCancelledEmail(reason=reason)
        case "exchange_closed" if extra.get("outcome") in {o.value for o in Outcome}:
            return ExchangeClosedEmail(outcome=Outcome(extra["outcome"]), reason=reason)
        case "outcome_wave" if organisation_id:
            months = round(float(extra.get("months") or 6))
            return OutcomeWaveEmail(organisation_id=organisation_id, months=months)
    return None


def organisation_of(email: EmailData | None) -> str | None:
    """The candidate organisation an e-mail is about, if any."""
    match email:
        case CandidateEmail() | PartnerDeclinedEmail() | OutcomeWaveEmail():
            return email.organisation_id
    return None


def _email_fields(email: EmailData | None) -> dict[str, Any]:
    """The context fields a kind's typed data fills in."""
    match email:
        case RequestRejectedEmail(reason=reason) | MeetingCancelledEmail(reason=reason):
            return {"reason": reason}
        case ChangesRequestedEmail(note=note):
            return {"note": note}
        case ShortlistNeededEmail(candidate_count=count):
            return {"candidate_count": count}
        case PartnerDeclinedEmail(next_step=next_step, reason=reason):
            return {"next_step": next_step, "reason": reason}
        case SchedulingStuckEmail(rounds=rounds):
            return {"rounds": rounds}
        case MeetingRescheduledEmail(previous_start=previous_start):
            return {"previous_start": previous_start}
        case ExchangeClosedEmail(outcome=outcome, reason=reason):
            return {"outcome": outcome.value, "reason": reason}
        case OutcomeWaveEmail(months=months):
            return {"months": max(1, months)}
    return {}


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1].rstrip() + "…"


def _only_fields(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """The fields the kind's context declares: contexts refuse unknown ones."""
    model = KINDS[kind]
    return {
        name: values[name]
        for name in model.model_fields
        if name in values and not (values[name] is None and model.model_fields[name].is_required())
    }
