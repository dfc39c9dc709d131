"""What each reader may see of an exchange: the core's one rule, on plain data."""

from datetime import UTC, datetime
from typing import Any

from ce4big.domain import CooperationType, Role
from ce4big.exchanges import Audience, CandidateFacts, disclosure_for
from ce4big.models import Exchange, ExchangeEvent, User

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EXCHANGE = Exchange(
    id=7,
    title="GLP toxicology",
    description="A repeated-dose study.",
    requester_id=1,
    organisation_id="bw-sme",
    home_cluster="biowin",
    cooperation_type=CooperationType.SERVICE_AGREEMENT,
)
CANDIDATES = [
    CandidateFacts("bm-cro", "biom", "bd@isartox.example", accepted=False),
    CandidateFacts("kr-cro", "klsk", "bd@waweltox.example", accepted=False),
]
STATE: dict[str, Any] = {
    "stage": "introduction",
    "waiting_on": ["partner:kr-cro"],
    "since": AT.isoformat(),
    "deadline": None,
    "outcome": None,
    "candidates": [
        {"organisation_id": "bm-cro", "cluster": "biom", "host_decision": "endorsed"},
        {"organisation_id": "kr-cro", "cluster": "klsk", "host_decision": "endorsed"},
    ],
    "shortlist": ["bm-cro", "kr-cro"],
    "current_candidate": "kr-cro",
    "partner": None,
    "proposal": None,
    "meeting": None,
    "survey": {},
    "matching_rounds": 1,
}


def user(role: str, cluster: str | None = None, email: str = "someone@example.org") -> User:
    return User(id=9, email=email, role=Role(role), cluster_id=cluster)


def event(kind: str, actor: str = "system", **detail: Any) -> ExchangeEvent:
    return ExchangeEvent(
        exchange_id=7, event_key=kind, at=AT, kind=kind, actor=actor, detail=detail
    )


EVENTS = [
    event("vetting_approve", "broker@biowin.example"),
    event("shortlisted", organisation_ids=["bm-cro", "kr-cro"]),
    event("host_review_done", decisions={"bm-cro": "endorsed", "kr-cro": "endorsed"}),
    event("stage_entered", stage="introduction", waiting_on=["partner:bm-cro"]),
    event("introduction_declined", "bd@isartox.example", organisation_id="bm-cro", reason="busy"),
    event("email_failed", audiences=["partner:bm-cro"], error="bd@isartox.example refused"),
    event("stage_entered", stage="introduction", waiting_on=["partner:kr-cro"]),
]


def seen_by(reader: User, state: dict[str, Any] | None = None) -> str:
    seen = disclosure_for(user=reader, exchange=EXCHANGE, candidates=CANDIDATES, state=state)
    return repr((seen.state(state or STATE), [e.model_dump() for e in seen.events(EVENTS)]))


class TestDisclosure:
    def test_the_home_cluster_and_managers_see_everything(self) -> None:
        for reader in (user("broker", "biowin"), user("manager"), user("admin")):
            seen = disclosure_for(user=reader, exchange=EXCHANGE, candidates=CANDIDATES)
            assert seen.audience == Audience.ALL
            assert seen.state(STATE) == STATE
            assert [e.actor for e in seen.events(EVENTS)] == [e.actor for e in EVENTS]

    def test_the_requester_learns_no_candidate_before_one_accepts(self) -> None:
        reader = user("sme", email="anna@bw.example")
        seen = disclosure_for(user=reader, exchange=EXCHANGE, candidates=CANDIDATES)
        state = seen.state(STATE)
        assert state is not None
        assert state["waiting_on"] == ["partner"]
        assert (state["candidates"], state["shortlist"], state["current_candidate"]) == (
            [],
            [],
            None,
        )
        assert [e.kind for e in seen.events(EVENTS)] == [
            "vetting_approve",
            "stage_entered",
            "stage_entered",
        ]
        for name in ("bm-cro", "kr-cro", "isartox", "waweltox", "broker@biowin"):
            assert name not in seen_by(reader), name

    def test_the_requester_sees_the_partner_who_accepted(self) -> None:
        accepted = list(CANDIDATES)
        accepted[1] = CandidateFacts("kr-cro", "klsk", "bd@waweltox.example", accepted=True)
        state = {**STATE, "partner": "kr-cro", "stage": "scheduling", "waiting_on": ["requester"]}
        events = [
            *EVENTS,
            event("introduction_accepted", "bd@waweltox.example", organisation_id="kr-cro"),
        ]
        reader = user("sme", email="anna@bw.example")
        seen = disclosure_for(user=reader, exchange=EXCHANGE, candidates=accepted, state=state)
        shown = seen.events(events)
        assert seen.state(state)["partner"] == "kr-cro"  # type: ignore[index]
        assert shown[-1].kind == "introduction_accepted"
        assert shown[-1].actor == "bd@waweltox.example"
        assert "isartox" not in repr([e.model_dump() for e in shown])

    def test_a_host_broker_sees_its_own_clusters_candidates_only(self) -> None:
        klsk = user("broker", "klsk", "broker@klsk.example")
        seen = disclosure_for(user=klsk, exchange=EXCHANGE, candidates=CANDIDATES, state=STATE)
        state = seen.state(STATE)
        assert state is not None
        assert [c["organisation_id"] for c in state["candidates"]] == ["kr-cro"]
        assert state["shortlist"] == ["kr-cro"] and state["current_candidate"] == "kr-cro"
        assert state["waiting_on"] == ["partner:kr-cro"]
        shown = {e.kind: e for e in seen.events(EVENTS)}
        assert shown["shortlisted"].detail["organisation_ids"] == ["kr-cro"]
        assert shown["host_review_done"].detail["decisions"] == {"kr-cro": "endorsed"}
        assert "introduction_declined" not in shown and "email_failed" not in shown
        assert shown["vetting_approve"].actor == ""
        for name in ("bm-cro", "isartox"):
            assert name not in seen_by(klsk, STATE), name

    def test_the_declining_partners_own_cluster_reads_the_decline(self) -> None:
        biom = user("broker", "biom", "broker@biom.example")
        seen = disclosure_for(user=biom, exchange=EXCHANGE, candidates=CANDIDATES, state=STATE)
        declined = [e for e in seen.events(EVENTS) if e.kind == "introduction_declined"]
        assert [e.actor for e in declined] == ["bd@isartox.example"]
        assert seen.state(STATE)["waiting_on"] == ["partner"]  # type: ignore[index]

    def test_host_clusters_other_than_the_readers_are_not_named(self) -> None:
        review = {
            **STATE,
            "stage": "host_review",
            "waiting_on": ["host_broker:biom", "host_broker:klsk"],
        }
        klsk = user("broker", "klsk")
        sme = user("sme")
        for reader, wanted in ((klsk, ["host_broker", "host_broker:klsk"]), (sme, ["host_broker"])):
            seen = disclosure_for(user=reader, exchange=EXCHANGE, candidates=CANDIDATES)
            assert seen.state(review)["waiting_on"] == wanted  # type: ignore[index]
