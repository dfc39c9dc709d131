"""Text for people in their language: gettext catalogues, the choice of language, and the one way
pages and e-mails write dates, times and the labels of closed vocabularies.

Messages are English in the code and templates; `locales/<language>/LC_MESSAGES/messages.po`
holds each translation. The catalogues are compiled in memory on first use, so that a fresh clone
runs without a build step and a stale compiled file can never hide an edited one.
"""

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import cache
from gettext import NullTranslations
from io import BytesIO
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from babel.dates import format_date as babel_format_date
from babel.dates import format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import Translations
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from ce4big.domain import (
    LANGUAGES,
    CooperationType,
    FunnelStep,
    Language,
    MeetingFormat,
    MeetingMode,
    OrganisationKind,
    Outcome,
    Party,
    Stage,
    SurveyOutcome,
    WaveOutcome,
)

LOCALES_DIR: Final = Path(__file__).resolve().parent / "locales"
DOMAIN: Final = "messages"
DEFAULT_LANGUAGE: Final = Language.EN
# English is written for European readers: day before month, 24-hour clock.
BABEL_LOCALES: Final = {"en": "en_GB", "fr": "fr_FR", "de": "de_DE", "pl": "pl_PL"}
EN_DASH: Final = "\N{EN DASH}"


def N_(message: str) -> str:
    """Marks a message for extraction; it is translated where it is shown."""
    return message


LABELS: Final[Mapping[type[StrEnum], Mapping[str, str]]] = {
    Language: {
        Language.EN: N_("English"),
        Language.FR: N_("French"),
        Language.DE: N_("German"),
        Language.PL: N_("Polish"),
    },
    CooperationType: {
        CooperationType.SERVICE_AGREEMENT: N_("service agreement"),
        CooperationType.SUBCONTRACTING: N_("subcontracting"),
        CooperationType.RESEARCH_COOPERATION: N_("research cooperation"),
        CooperationType.TECHNICAL_COOPERATION: N_("technical cooperation"),
        CooperationType.COMMERCIAL_AGREEMENT: N_("commercial agreement"),
        CooperationType.LICENSING: N_("licensing"),
        CooperationType.JOINT_EU_PROJECT: N_("joint EU project"),
    },
    MeetingMode: {
        MeetingMode.VIDEO: N_("video call"),
        MeetingMode.IN_PERSON: N_("in person"),
        MeetingMode.PHONE: N_("phone call"),
    },
    MeetingFormat: {
        MeetingFormat.VIDEO: N_("video call"),
        MeetingFormat.IN_PERSON: N_("in person"),
        MeetingFormat.PHONE: N_("phone call"),
        MeetingFormat.ANY: N_("any format"),
    },
    OrganisationKind: {
        OrganisationKind.SME: N_("SME"),
        OrganisationKind.CRO: N_("contract research organisation (CRO)"),
        OrganisationKind.CDMO: N_("contract manufacturer (CDMO)"),
        OrganisationKind.ACADEMIC_LAB: N_("academic laboratory"),
        OrganisationKind.CORE_FACILITY: N_("core facility"),
        OrganisationKind.HOSPITAL: N_("hospital"),
        OrganisationKind.LARGE_COMPANY: N_("large company"),
        OrganisationKind.PLATFORM: N_("technology platform"),
    },
    Stage: {
        Stage.VETTING: N_("Vetting by the cluster"),
        Stage.CHANGES_REQUESTED: N_("Changes requested"),
        Stage.MATCHING: N_("Looking for partners"),
        Stage.HOST_REVIEW: N_("Review by the partners' clusters"),
        Stage.INTRODUCTION: N_("Introduction"),
        Stage.SCHEDULING: N_("Scheduling the meeting"),
        Stage.MEETING_SCHEDULED: N_("Meeting scheduled"),
        Stage.FOLLOW_UP: N_("Follow-up"),
        Stage.CLOSED: N_("Closed"),
    },
    Outcome: {
        Outcome.COMPLETED: N_("Completed"),
        Outcome.REJECTED: N_("Rejected"),
        Outcome.WITHDRAWN: N_("Withdrawn"),
        Outcome.CANCELLED: N_("Cancelled"),
        Outcome.NO_PARTNER: N_("No partner found"),
        Outcome.EXPIRED: N_("Expired"),
    },
    SurveyOutcome: {
        SurveyOutcome.DID_NOT_TAKE_PLACE: N_("The meeting did not take place"),
        SurveyOutcome.INSUFFICIENT_INTEREST: N_("Not enough common interest"),
        SurveyOutcome.INFORMATIVE_NO_COOPERATION: N_("Informative, but no cooperation in view"),
        SurveyOutcome.COOPERATION_POSSIBLE: N_("A cooperation looks possible"),
    },
    FunnelStep: {
        FunnelStep.SUBMITTED: N_("Submitted"),
        FunnelStep.APPROVED: N_("Approved by the broker"),
        FunnelStep.SHORTLISTED: N_("Shortlisted"),
        FunnelStep.PARTNER_ACCEPTED: N_("Partner accepted"),
        FunnelStep.MEETING_SCHEDULED: N_("Meeting scheduled"),
        FunnelStep.MEETING_HELD: N_("Meeting held"),
        FunnelStep.SURVEY_ANSWERED: N_("Survey answered"),
        FunnelStep.COMPLETED: N_("Completed"),
    },
    Party: {
        Party.REQUESTER: N_("Requester"),
        Party.PARTNER: N_("Partner"),
        Party.HOME_BROKER: N_("Home cluster's broker"),
        Party.HOST_BROKER: N_("Host cluster's broker"),
    },
    WaveOutcome: {
        WaveOutcome.NO_FURTHER_CONTACT: N_("No further contact"),
        WaveOutcome.VALUABLE_CONTACT: N_("A valuable contact, nothing concrete yet"),
        WaveOutcome.NEGOTIATION_STARTED: N_("Negotiations have started"),
        WaveOutcome.AGREEMENT_REACHED: N_("An agreement was reached"),
    },
}


# How a date and a time join in a sentence ("le mardi 31 mars 2026 à 10:00").
_DATE_AT_TIME: Final = N_("%(date)s at %(time)s")


def catalogue_path(language: str) -> Path:
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(language: str) -> NullTranslations:
    """The language's catalogue, compiled from its .po once per process; English is the
    messages themselves."""
    if language == DEFAULT_LANGUAGE or language not in LANGUAGES:
        return NullTranslations()
    with catalogue_path(language).open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def translate(language: str, message: str, **values: object) -> str:
    """`message` in `language`, its `%(name)s` placeholders filled from `values`."""
    text = translations(language).gettext(message)
    return text % values if values else text


def label(language: str, vocabulary: type[StrEnum], value: str) -> str:
    message = LABELS[vocabulary].get(value)
    return translate(language, message) if message else value.replace("_", " ")


def normalise_language(value: str | None) -> str | None:
    """`fr-BE` and `FR` are French; a language without translations is no choice at all."""
    if not value:
        return None
    primary = value.strip().replace("_", "-").split("-")[0].lower()
    return primary if primary in LANGUAGES else None


def _accepted(header: str | None) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((header or "").split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        language = normalise_language(tag)
        if language and quality > 0:
            ranked.append((-quality, position, language))
    return [language for _, _, language in sorted(ranked)]


def negotiate_language(*preferred: str | None, accept_language: str | None = None) -> str:
    """The first known language among the preferred ones (the user's setting, then the link's
    or the cluster's), then the browser's best choice, then English."""
    for candidate in (*preferred, *_accepted(accept_language)):
        if language := normalise_language(candidate):
            return language
    return DEFAULT_LANGUAGE


def _local(value: datetime, zone: str) -> datetime:
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(zone))


def _time(value: datetime, zone: str, language: str) -> str:
    return format_time(value, "short", tzinfo=ZoneInfo(zone), locale=BABEL_LOCALES[language])


def _zone_name(value: datetime, zone: str, language: str) -> str:
    # The long name says whether summer time applies, which an offset alone leaves unclear.
    return format_time(value, "zzzz", tzinfo=ZoneInfo(zone), locale=BABEL_LOCALES[language])


def format_date(value: datetime, *, zone: str, language: str) -> str:
    """`31 March 2026`, the day in the reader's zone."""
    return babel_format_date(_local(value, zone), "long", locale=BABEL_LOCALES[language])


def format_datetime(value: datetime, *, zone: str, language: str) -> str:
    """`Tuesday, 31 March 2026 at 10:00 (Central European Summer Time)`."""
    local = _local(value, zone)
    date = babel_format_date(local, "full", locale=BABEL_LOCALES[language])
    moment = translate(language, _DATE_AT_TIME, date=date, time=_time(local, zone, language))
    return f"{moment} ({_zone_name(local, zone, language)})"


def format_short_datetime(value: datetime, *, zone: str, language: str) -> str:
    """`31 Mar 2026, 10:00 CEST`: for lists and tables, still naming the zone."""
    local = _local(value, zone)
    date = babel_format_date(local, "medium", locale=BABEL_LOCALES[language])
    zone_name = format_time(local, "z", tzinfo=ZoneInfo(zone), locale=BABEL_LOCALES[language])
    return f"{date}, {_time(local, zone, language)} {zone_name}"


def format_span(start: datetime, end: datetime, *, zone: str, language: str) -> str:
    """`Tuesday, 31 March 2026, 10:00-11:00 (Central European Summer Time)`, with an en dash;
    a span over midnight names both days."""
    local_start, local_end = _local(start, zone), _local(end, zone)
    if local_start.date() != local_end.date():
        first = format_datetime(start, zone=zone, language=language)
        return f"{first} {EN_DASH} {format_datetime(end, zone=zone, language=language)}"
    date = babel_format_date(local_start, "full", locale=BABEL_LOCALES[language])
    times = EN_DASH.join(_time(t, zone, language) for t in (local_start, local_end))
    return f"{date}, {times} ({_zone_name(local_start, zone, language)})"


def format_day(value: date, *, language: str) -> str:
    """`31 March 2026`: a calendar day, as the reports count them."""
    return babel_format_date(value, "long", locale=BABEL_LOCALES[language])


def format_number(value: float, *, language: str, digits: int = 1) -> str:
    """`1,234.5` in English, `1 234,5` in French: at most `digits` decimals."""
    pattern = "#,##0." + "#" * digits if digits else "#,##0"
    return format_decimal(value, pattern, locale=BABEL_LOCALES[language])


def format_share(value: float, *, language: str) -> str:
    """`67 %`: a share from 0 to 1 as a whole percentage, in the reader's typography."""
    return format_percent(value, locale=BABEL_LOCALES[language])


def format_months_ago(months: int, *, language: str) -> str:
    # A high threshold keeps "18 months ago" from being rounded to "2 years ago".
    return format_timedelta(
        timedelta(days=-30.44 * months),
        granularity="month",
        threshold=1000,
        add_direction=True,
        locale=BABEL_LOCALES[language],
    )


@pass_context
def _template_gettext(ctx: Context, message: str) -> str:
    return translations(ctx["language"]).gettext(message)


@pass_context
def _template_ngettext(ctx: Context, singular: str, plural: str, count: int) -> str:
    return translations(ctx["language"]).ngettext(singular, plural, count)


@pass_context
def _template_pgettext(ctx: Context, context: str, message: str) -> str:
    return translations(ctx["language"]).pgettext(context, message)


def install_gettext(env: Environment) -> None:
    """`_()`, `{% trans %}` and `pgettext()` in the templates of `env`, in the language the
    template context names: one environment serves every language."""
    env.add_extension("jinja2.ext.i18n")
    # Added to the environment by the extension above.
    env.install_gettext_callables(  # type: ignore[attr-defined]
        _template_gettext, _template_ngettext, newstyle=True, pgettext=_template_pgettext
    )
