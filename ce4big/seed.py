"""Demo data: the project's own fictional catalogue, one set of users per cluster, and a few
past exchanges (closed with every outcome, two still waiting past their deadline) so that the
reports are not empty on a fresh stack.

The past exchanges have no workflow: their rows are written as the workflow's record
activities write them (timeline events, stage spells, candidates, survey answers), by the same
builder that `bench/reports.py` uses for its 100,000 exchanges."""

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, func, select

from ce4big import rollup, tallies
from ce4big.catalogue.csvio import parse_catalogue_csv
from ce4big.catalogue.store import upsert_organisations
from ce4big.domain import (
    CLUSTERS,
    CooperationType,
    MeetingFormat,
    Outcome,
    Role,
    Stage,
    SurveyOutcome,
    WaveOutcome,
)
from ce4big.models import (
    Exchange,
    ExchangeCandidate,
    ExchangeEvent,
    ExchangeStage,
    Organisation,
    SurveyResponse,
    User,
    utcnow,
)
from ce4big.rollup import ending
from ce4big.settings import Settings
from ce4big.users import add_user

DEMO_CATALOGUE = Path(__file__).resolve().parent / "demo" / "catalogue.csv"
DEMO_DOMAIN = "ce4big-demo.example"
SMES_PER_CLUSTER = 3
# The requester's idempotency key of each demo past exchange: seeding again skips those there.
PAST_KEY = "demo-past-{}"


@dataclass(frozen=True)
class SeedReport:
    organisations: int
    users: int
    exchanges: int = 0

    def __str__(self) -> str:
        return (
            f"demo data: {self.organisations} organisations, {self.users} users, "
            f"{self.exchanges} past exchanges"
        )


def demo_email(local: str) -> str:
    return f"{local}@{DEMO_DOMAIN}"


def is_seeded(*, session: Session) -> bool:
    return session.exec(select(func.count()).select_from(User)).one() > 0


def seed_demo(*, session: Session, now: datetime | None = None) -> SeedReport:
    """Upsert the demo catalogue and users and add the past exchanges that are missing;
    running it again changes nothing."""
    rows = parse_catalogue_csv(DEMO_CATALOGUE.read_bytes())
    upsert_organisations(session=session, rows=rows)
    session.flush()
    users = [
        add_user(session=session, email=demo_email("admin"), role=Role.ADMIN, name="Demo Admin")
    ]
    for cluster in CLUSTERS:
        for role in (Role.BROKER, Role.MANAGER):
            users.append(
                add_user(
                    session=session,
                    email=demo_email(f"{role.value}.{cluster.id}"),
                    role=role,
                    cluster_id=cluster.id,
                    name=f"{cluster.name} {role.value}",
                    language=cluster.language,
                )
            )
        smes = session.exec(
            select(Organisation)
            .where(Organisation.cluster_id == cluster.id, Organisation.kind == "sme")
            .order_by(Organisation.id)
            .limit(SMES_PER_CLUSTER)
        ).all()
        for number, organisation in enumerate(smes, start=1):
            users.append(
                add_user(
                    session=session,
                    email=demo_email(f"sme{number}.{cluster.id}"),
                    role=Role.SME,
                    organisation_id=organisation.id,
                    name=f"{organisation.contact_name or organisation.name}",
                    language=cluster.language,
                )
            )
    exchanges = seed_past_exchanges(session=session, now=now or utcnow())
    return SeedReport(organisations=len(rows), users=len(users), exchanges=exchanges)


# ---------------------------------------------------------------- recorded histories


def _setting_days(name: str) -> float:
    return float(Settings.model_fields[name].default)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """The lifecycle's deadlines in days (the settings' defaults)."""

    vetting: float = _setting_days("vetting_escalation_days")
    changes: float = _setting_days("changes_expiry_days")
    shortlist: float = _setting_days("shortlist_escalation_days")
    host_review: float = _setting_days("host_review_consent_days")
    partner: float = _setting_days("partner_deadline_days")
    scheduling: float = _setting_days("scheduling_deadline_days")
    survey_delay: float = _setting_days("survey_delay_days")
    survey_close: float = _setting_days("survey_close_days")
    outcome_wave: float = _setting_days("outcome_wave_days")
    outcome_wave_close: float = _setting_days("outcome_wave_close_days")


DEADLINES = Deadlines()


class StillOpen(Exception):
    """The history reached its `until`: the exchange is open in the stage it is in."""


@dataclass
class PastExchange:
    """One exchange's rows as the workflow's record activities write them, built step by step
    on a clock; nothing at or after `until` is written (the exchange is then still open).

    Rows are dicts of column values, ready for a bulk `insert(Table)`."""

    exchange_id: int
    home_cluster: str
    clock: datetime
    until: datetime
    events: list[dict[str, Any]] = field(default_factory=list)
    spells: list[dict[str, Any]] = field(default_factory=list)
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    surveys: list[dict[str, Any]] = field(default_factory=list)
    status: Stage = Stage.VETTING
    outcome: Outcome | None = None
    closed_at: datetime | None = None
    result: str | None = None
    agreement_type: str | None = None
    updated_at: datetime | None = None
    _seq: int = 0

    def wait(self, days: float) -> None:
        """Moves the clock; raises StillOpen when that would reach `until`."""
        if not days < (self.until - self.clock).total_seconds() / 86400:
            raise StillOpen
        self.clock += timedelta(days=days)

    def record(self, kind: str, *, actor: str = "system", **detail: Any) -> None:
        self._seq += 1
        self.events.append(
            {
                "exchange_id": self.exchange_id,
                "event_key": f"exchange-{self.exchange_id}:{self._seq}:{kind}",
                "at": self.clock,
                "kind": kind,
                "actor": actor,
                "detail": {k: v for k, v in detail.items() if v not in (None, "")},
            }
        )
        self.updated_at = self.clock

    def enter(self, stage: Stage, waiting_on: list[str], deadline_days: float | None) -> None:
        """Ends the open spell and opens the next, with its `stage_entered` event."""
        if self.spells and self.spells[-1]["left_at"] is None:
            last = self.spells[-1]
            last.update(ending(last["entered_at"], self.clock, last["waiting_on"]))
        self.status = stage
        open_spell = {"left_at": None, "hours": None, "bucket": None, "parties": None}
        self.spells.append(
            {
                "exchange_id": self.exchange_id,
                "stage": stage.value,
                "waiting_on": list(waiting_on),
                "entered_at": self.clock,
                # A closed exchange waits on nobody and has no next stage.
                **(ending(self.clock, self.clock, []) if stage == Stage.CLOSED else open_spell),
                "deadline_at": None
                if deadline_days is None
                else self.clock + timedelta(days=deadline_days),
            }
        )
        self.record("stage_entered", stage=stage.value, waiting_on=list(waiting_on))

    def candidate(self, organisation_id: str, **values: Any) -> None:
        row = self.candidates.setdefault(
            organisation_id,
            {
                "exchange_id": self.exchange_id,
                "organisation_id": organisation_id,
                "rank": len(self.candidates) + 1,
                "score": 0.0,
                "reasons": [],
                "shortlist_position": None,
                "host_decision": None,
                "intro_status": None,
                "intro_reason": None,
                "updated_at": self.clock,
            },
        )
        row.update(values, updated_at=self.clock)

    def survey(
        self,
        respondent: str,
        wave: str,
        outcome: str,
        *,
        satisfaction: int | None = None,
        recommend: int | None = None,
        agreement_type: str | None = None,
    ) -> None:
        self.surveys.append(
            {
                "exchange_id": self.exchange_id,
                "respondent": respondent,
                "wave": wave,
                "outcome": outcome,
                "satisfaction": satisfaction,
                "recommend": recommend,
                "agreement_type": agreement_type,
                "comment": "",
                "at": self.clock,
            }
        )

    def close(
        self,
        outcome: Outcome,
        *,
        actor: str = "system",
        reason: str = "",
        result: str | None = None,
    ) -> None:
        self.enter(Stage.CLOSED, [], None)
        self.record("closed", actor=actor, reason=reason)
        self.outcome = outcome
        self.closed_at = self.clock
        self.result = result

    def exchange_values(self) -> dict[str, Any]:
        """The exchange row's columns that its history sets."""
        return {
            "status": self.status.value,
            "outcome": None if self.outcome is None else self.outcome.value,
            "closed_at": self.closed_at,
            "result": self.result,
            "agreement_type": self.agreement_type,
            "updated_at": self.updated_at or self.clock,
        }


@dataclass(frozen=True, slots=True)
class Story:
    """How a past exchange went. `outcome` None: still open, waiting for ever at `stop`;
    withdrawn, cancelled and expired exchanges end at `stop` (expired: changes_requested or
    scheduling); rejected ends at vetting, no_partner after the introductions."""

    outcome: Outcome | None
    stop: Stage | None = None
    changes: bool = False
    # Candidates who declined the introduction (or let it lapse) before one accepted.
    declines: int = 0
    requester_answer: SurveyOutcome | None = None
    partner_answer: SurveyOutcome | None = None
    wave: WaveOutcome | None = None
    agreement_type: CooperationType | None = None


def _days(rng: random.Random, median: float, cap: float | None = None) -> float:
    """A human's delay: log-normal around `median` days, cut at a deadline the workflow keeps."""
    days = median * math.exp(rng.gauss(0.0, 0.8))
    return days if cap is None else min(days, cap)


def walk_exchange(
    history: PastExchange,
    story: Story,
    *,
    rng: random.Random,
    partners: Sequence[tuple[str, str]],
    requester: str,
    home_broker: str,
    manager: str,
) -> None:
    """Writes the history of `story` into `history`, stage by stage as the workflow records it,
    until it closes or reaches `history.until`. `partners` are the ranked candidates
    (organisation id, cluster); the shortlist takes as many as the story needs."""
    try:
        _lifecycle(history, story, rng, partners, requester, home_broker, manager)
    except StillOpen:
        return
    if story.wave is None or history.outcome != Outcome.COMPLETED:
        return
    # The outcome wave, months later: each side that answered the survey says where it stands.
    try:
        history.wait(DEADLINES.outcome_wave + _days(rng, 5, DEADLINES.outcome_wave_close))
    except StillOpen:
        return
    agreement = None
    if story.wave == WaveOutcome.AGREEMENT_REACHED and story.agreement_type is not None:
        agreement = story.agreement_type.value
    sides = ["requester"] + (["partner"] if story.partner_answer else [])
    for side in sides:
        history.survey(side, "outcome", story.wave.value, agreement_type=agreement)
    history.record("outcome_recorded", **dict.fromkeys(sides, story.wave.value))
    history.result = story.wave.value
    history.agreement_type = agreement


def _lifecycle(
    h: PastExchange,
    story: Story,
    rng: random.Random,
    partners: Sequence[tuple[str, str]],
    requester: str,
    home_broker: str,
    manager: str,
) -> None:
    d = DEADLINES

    def ends_here(stage: Stage) -> bool:
        if story.stop != stage:
            return False
        if story.outcome is None:
            h.wait(math.inf)
        if story.outcome == Outcome.WITHDRAWN:
            h.wait(_days(rng, 2))
            h.close(Outcome.WITHDRAWN, actor=requester, reason="We found a partner ourselves.")
        elif story.outcome == Outcome.CANCELLED:
            h.wait(_days(rng, 3))
            h.close(Outcome.CANCELLED, actor=manager, reason="Out of the programme's scope.")
        else:
            return False
        return True

    h.record("submitted")
    h.enter(Stage.VETTING, ["home_broker"], d.vetting)
    if ends_here(Stage.VETTING):
        return
    if story.changes:
        h.wait(_days(rng, 1.5))
        h.record("vetting_request_changes", actor=home_broker, note="Please name the assay.")
        h.enter(Stage.CHANGES_REQUESTED, ["requester"], d.changes)
        if story.outcome == Outcome.EXPIRED and story.stop == Stage.CHANGES_REQUESTED:
            h.wait(d.changes)
            h.close(Outcome.EXPIRED, reason="the requested changes were not made in time")
            return
        if ends_here(Stage.CHANGES_REQUESTED):
            return
        h.wait(_days(rng, 3, d.changes))
        h.record("amended", actor=requester, note="Assay named.")
        h.enter(Stage.VETTING, ["home_broker"], d.vetting)
    h.wait(_days(rng, 1.2))
    if story.outcome == Outcome.REJECTED:
        note = "Not a cross-cluster request."
        h.record("vetting_reject", actor=home_broker, note=note)
        h.close(Outcome.REJECTED, reason=note)
        return
    h.record("vetting_approve", actor=home_broker)

    h.enter(Stage.MATCHING, ["home_broker"], d.shortlist)
    h.record("candidates_found", count=len(partners), round=1)
    for rank, (organisation_id, _cluster) in enumerate(partners, start=1):
        h.candidate(organisation_id, rank=rank, score=round(12.0 / (rank + 1), 3))
    if ends_here(Stage.MATCHING):
        return
    no_partner = story.outcome == Outcome.NO_PARTNER
    size = max(1, min(len(partners), story.declines + (0 if no_partner else 1)))
    shortlist = list(partners[:size])
    h.wait(_days(rng, 1.5))
    h.record("shortlisted", actor=home_broker, organisation_ids=[o for o, _ in shortlist])
    for position, (organisation_id, _cluster) in enumerate(shortlist, start=1):
        h.candidate(organisation_id, shortlist_position=position, host_decision="pending")

    h.enter(
        Stage.HOST_REVIEW,
        [f"host_broker:{c}" for c in sorted({c for _, c in shortlist})],
        d.host_review,
    )
    if ends_here(Stage.HOST_REVIEW):
        return
    review = _days(rng, 0.8)
    h.wait(min(review, d.host_review))
    decision = "endorsed" if review < d.host_review else "consented"
    for organisation_id, _cluster in shortlist:
        h.candidate(organisation_id, host_decision=decision)
    h.record("host_review_done", decisions={o: decision for o, _ in shortlist})

    partner = None
    for index, (organisation_id, _cluster) in enumerate(shortlist):
        h.enter(Stage.INTRODUCTION, [f"partner:{organisation_id}"], d.partner)
        h.candidate(organisation_id, intro_status="asked")
        if index == 0 and ends_here(Stage.INTRODUCTION):
            return
        if index < story.declines:
            delay = _days(rng, 2.5)
            h.wait(min(delay, d.partner))
            status = "declined" if delay < d.partner else "no_answer"
            h.candidate(organisation_id, intro_status=status)
            h.record(f"introduction_{status}", organisation_id=organisation_id)
            continue
        h.wait(_days(rng, 1.5, d.partner))
        h.candidate(organisation_id, intro_status="accepted")
        h.record("introduction_accepted", organisation_id=organisation_id)
        partner = organisation_id
        break
    if partner is None:
        # The second round finds nobody not asked yet.
        h.enter(Stage.MATCHING, ["home_broker"], d.shortlist)
        h.record("candidates_found", count=0, round=2)
        h.close(Outcome.NO_PARTNER)
        return

    h.enter(Stage.SCHEDULING, ["requester"], d.scheduling)
    if story.outcome == Outcome.EXPIRED and story.stop == Stage.SCHEDULING:
        h.wait(d.scheduling)
        h.enter(Stage.SCHEDULING, ["requester"], d.scheduling)
        h.wait(d.scheduling)
        h.close(Outcome.EXPIRED, reason="no meeting could be scheduled")
        return
    if ends_here(Stage.SCHEDULING):
        return
    h.wait(_days(rng, 2, d.scheduling))
    h.record("slots_proposed", actor=requester, by="requester", round=1)
    h.enter(Stage.SCHEDULING, ["partner"], d.scheduling)
    h.wait(_days(rng, 1.5, d.scheduling))
    lead = timedelta(days=round(_days(rng, 7, 60)) + 1)
    start = (h.clock + lead).replace(hour=9 + rng.randrange(8), minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=1)
    meeting_days = (end - h.clock).total_seconds() / 86400
    h.enter(Stage.MEETING_SCHEDULED, [], meeting_days)
    h.record("meeting_scheduled", start=start.isoformat(), end=end.isoformat(), sequence=1)
    if ends_here(Stage.MEETING_SCHEDULED):
        return
    h.wait(meeting_days)
    h.record("meeting_held")

    h.enter(Stage.FOLLOW_UP, [], d.survey_delay)
    h.wait(d.survey_delay)
    h.enter(Stage.FOLLOW_UP, ["requester", "partner"], d.survey_close)
    if ends_here(Stage.FOLLOW_UP):
        return
    answers = {"requester": story.requester_answer, "partner": story.partner_answer}
    if all(answers.values()):
        h.wait(max(_days(rng, 3, d.survey_close), _days(rng, 4, d.survey_close)))
    else:
        h.wait(d.survey_close)
    for side, answer in sorted(answers.items()):
        if answer is None:
            continue
        h.survey(side, "survey", answer.value, satisfaction=rng.randint(3, 5), recommend=8)
        actor = requester if side == "requester" else partner
        h.record("survey_answered", actor=actor, side=side, answer=answer.value)
    h.record("survey_closed", answered=sorted(s for s, a in answers.items() if a))
    result = story.requester_answer or story.partner_answer
    h.close(Outcome.COMPLETED, result=None if result is None else result.value)


# ---------------------------------------------------------------- the demo's past exchanges


@dataclass(frozen=True, slots=True)
class DemoExchange:
    cluster: str
    sme: int  # which of the cluster's demo SME users asked
    age_days: int  # submitted this many days before seeding
    title: str
    description: str
    cooperation_type: CooperationType
    story: Story


OK = SurveyOutcome.COOPERATION_POSSIBLE
INFORMATIVE = SurveyOutcome.INFORMATIVE_NO_COOPERATION
DEMO_EXCHANGES: tuple[DemoExchange, ...] = (
    DemoExchange(
        "biowin",
        1,
        300,
        "GLP toxicology package before first-in-human",
        "A GLP repeated-dose toxicity study and a genotoxicity battery for our kinase inhibitor.",
        CooperationType.SERVICE_AGREEMENT,
        Story(
            Outcome.COMPLETED,
            requester_answer=OK,
            partner_answer=OK,
            wave=WaveOutcome.AGREEMENT_REACHED,
            agreement_type=CooperationType.SERVICE_AGREEMENT,
        ),
    ),
    DemoExchange(
        "biowin",
        2,
        240,
        "GMP scale-up of an mRNA formulation",
        "Lipid nanoparticle formulation to scale from 1 L to 20 L batches under GMP.",
        CooperationType.SUBCONTRACTING,
        Story(
            Outcome.COMPLETED,
            declines=1,
            requester_answer=INFORMATIVE,
            partner_answer=SurveyOutcome.INSUFFICIENT_INTEREST,
            wave=WaveOutcome.VALUABLE_CONTACT,
        ),
    ),
    DemoExchange(
        "biowin",
        3,
        120,
        "Distributor for our diagnostic kits",
        "We look for a distributor of our in-vitro diagnostic kits in our own region.",
        CooperationType.COMMERCIAL_AGREEMENT,
        Story(Outcome.REJECTED),
    ),
    DemoExchange(
        "biowin",
        1,
        60,
        "Patient-derived organoids for efficacy testing",
        "Colorectal cancer organoids to test our antibody-drug conjugate before the IND.",
        CooperationType.RESEARCH_COOPERATION,
        Story(Outcome.WITHDRAWN, stop=Stage.INTRODUCTION),
    ),
    DemoExchange(
        "atlanpole",
        1,
        280,
        "Developability screening of antibody candidates",
        "Aggregation, viscosity and stability screening of twelve humanised antibodies.",
        CooperationType.SERVICE_AGREEMENT,
        Story(Outcome.COMPLETED, requester_answer=OK, wave=WaveOutcome.NEGOTIATION_STARTED),
    ),
    DemoExchange(
        "atlanpole",
        2,
        200,
        "Clinical-grade whole-genome sequencing partner",
        "ISO 15189 whole-genome sequencing for a 300-patient companion diagnostic study.",
        CooperationType.SERVICE_AGREEMENT,
        Story(Outcome.NO_PARTNER, declines=2),
    ),
    DemoExchange(
        "atlanpole",
        3,
        150,
        "Imaging core for a preclinical CAR-T study",
        "In-vivo bioluminescence imaging of CAR-T persistence in mouse xenograft models.",
        CooperationType.TECHNICAL_COOPERATION,
        Story(Outcome.EXPIRED, stop=Stage.CHANGES_REQUESTED, changes=True),
    ),
    DemoExchange(
        "atlanpole",
        1,
        90,
        "Bioinformatics pipeline audit",
        "An external review of our variant-calling pipeline before CE marking.",
        CooperationType.SERVICE_AGREEMENT,
        Story(Outcome.COMPLETED, requester_answer=INFORMATIVE, partner_answer=INFORMATIVE),
    ),
    DemoExchange(
        "biom",
        1,
        330,
        "Joint Horizon Europe proposal on AAV capsids",
        "Partners for a joint proposal on liver-detargeted AAV capsids for muscle diseases.",
        CooperationType.JOINT_EU_PROJECT,
        Story(
            Outcome.COMPLETED,
            requester_answer=OK,
            partner_answer=OK,
            wave=WaveOutcome.AGREEMENT_REACHED,
            agreement_type=CooperationType.RESEARCH_COOPERATION,
        ),
    ),
    DemoExchange(
        "biom",
        2,
        220,
        "Licensing a microbiome biomarker panel",
        "We would license a validated stool biomarker panel for inflammatory bowel disease.",
        CooperationType.LICENSING,
        Story(Outcome.CANCELLED, stop=Stage.MATCHING),
    ),
    DemoExchange(
        "biom",
        3,
        170,
        "Stability studies for a peptide drug product",
        "ICH stability studies at three conditions for a lyophilised peptide.",
        CooperationType.SUBCONTRACTING,
        Story(Outcome.EXPIRED, stop=Stage.SCHEDULING),
    ),
    DemoExchange(
        "biom",
        1,
        45,
        "Hospital partner for a digital pathology pilot",
        "A pathology department to pilot our AI-assisted slide triage on 500 archived cases.",
        CooperationType.RESEARCH_COOPERATION,
        Story(Outcome.COMPLETED, requester_answer=OK),
    ),
    DemoExchange(
        "klsk",
        1,
        260,
        "Cell line development for a bispecific antibody",
        "A CHO cell line with a titre above 3 g/L and the documentation for the regulators.",
        CooperationType.SERVICE_AGREEMENT,
        Story(
            Outcome.COMPLETED,
            changes=True,
            requester_answer=OK,
            partner_answer=OK,
            wave=WaveOutcome.VALUABLE_CONTACT,
        ),
    ),
    DemoExchange(
        "klsk",
        2,
        190,
        "Office space in Kraków",
        "We are looking for office space for our growing team of data scientists.",
        CooperationType.COMMERCIAL_AGREEMENT,
        Story(Outcome.REJECTED),
    ),
    DemoExchange(
        "klsk",
        3,
        100,
        "Pharmacokinetics in minipigs",
        "A PK study of a subcutaneous formulation in Göttingen minipigs, non-GLP.",
        CooperationType.SERVICE_AGREEMENT,
        Story(Outcome.WITHDRAWN, stop=Stage.SCHEDULING),
    ),
    DemoExchange(
        "klsk",
        1,
        70,
        "Radiolabelling of a PET tracer",
        "Fluorine-18 labelling and quality control of our PSMA-targeting small molecule.",
        CooperationType.TECHNICAL_COOPERATION,
        Story(Outcome.NO_PARTNER, declines=1),
    ),
    # Still open, past their deadline: a vetting and a shortlist that nobody has done.
    DemoExchange(
        "klsk",
        2,
        30,
        "Usability study for a diabetes app",
        "Formative usability testing of our insulin dosing app with 15 patients.",
        CooperationType.SERVICE_AGREEMENT,
        Story(None, stop=Stage.VETTING),
    ),
    DemoExchange(
        "atlanpole",
        2,
        25,
        "Single-cell RNA-seq of tumour biopsies",
        "Single-cell sequencing of 40 fresh tumour biopsies with a validated dissociation.",
        CooperationType.SERVICE_AGREEMENT,
        Story(None, stop=Stage.MATCHING),
    ),
)
CANDIDATES_PER_EXCHANGE = 5


def seed_past_exchanges(*, session: Session, now: datetime) -> int:
    """Adds the demo past exchanges that are not there yet (found by their requester's
    idempotency key); their days are counted back from `now`. Returns how many there are."""
    there = set(
        session.exec(
            select(Exchange.idempotency_key).where(
                col(Exchange.idempotency_key).in_(
                    [PAST_KEY.format(n) for n in range(1, len(DEMO_EXCHANGES) + 1)]
                )
            )
        )
    )
    partners = session.exec(
        select(Organisation).where(Organisation.kind != "sme").order_by(Organisation.id)
    ).all()
    for number, demo in enumerate(DEMO_EXCHANGES, start=1):
        key = PAST_KEY.format(number)
        if key in there:
            continue
        requester = session.exec(
            select(User).where(User.email == demo_email(f"sme{demo.sme}.{demo.cluster}"))
        ).one()
        assert requester.id is not None
        created = (now - timedelta(days=demo.age_days)).replace(
            hour=8 + number % 9, minute=17, second=0, microsecond=0
        )
        exchange = Exchange(
            title=demo.title,
            description=demo.description,
            cooperation_type=demo.cooperation_type,
            meeting_format=MeetingFormat.VIDEO,
            requester_id=requester.id,
            organisation_id=requester.organisation_id,
            home_cluster=demo.cluster,
            idempotency_key=key,
            created_at=created,
            updated_at=created,
        )
        session.add(exchange)
        session.flush()
        assert exchange.id is not None
        abroad = [o for o in partners if o.cluster_id != demo.cluster]
        ranked = [
            abroad[(number * 7 + i * 5) % len(abroad)] for i in range(CANDIDATES_PER_EXCHANGE)
        ]
        history = PastExchange(
            exchange_id=exchange.id, home_cluster=demo.cluster, clock=created, until=now
        )
        walk_exchange(
            history,
            demo.story,
            rng=random.Random(number),
            partners=[(o.id, o.cluster_id) for o in ranked],
            requester=requester.email,
            home_broker=demo_email(f"broker.{demo.cluster}"),
            manager=demo_email(f"manager.{demo.cluster}"),
        )
        exchange.status = history.status
        exchange.outcome = history.outcome
        exchange.closed_at = history.closed_at
        exchange.result = history.result
        exchange.agreement_type = history.agreement_type
        exchange.updated_at = history.updated_at or created
        session.add(exchange)
        for model, rows in (
            (ExchangeEvent, history.events),
            (ExchangeStage, history.spells),
            (ExchangeCandidate, list(history.candidates.values())),
            (SurveyResponse, history.surveys),
        ):
            if rows:
                session.execute(insert(model), rows)
    # The stage-time rollup and the report tallies that the activities would have kept.
    rollup.rebuild(session.connection())
    tallies.rebuild(session.connection())
    return len(DEMO_EXCHANGES)
