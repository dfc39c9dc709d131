import re
from typing import Any

import pytest

from ce4big.domain import LANGUAGES
from ce4big.mailerrors import EmailContextError
from emails.contexts import KINDS, action_url_of, parse_context
from emails.render import RenderedEmail, render_email
from emails.samples import sample_context

BASE_URL = "https://exchange.ce4big.example"
DASH = "\N{EN DASH}"
HOSTILE_TITLE = '<script>alert("x")</script> R&D "Tox" <b>study</b>'


def _render(
    kind: str, language: str = "en", timezone: str = "Europe/Paris", **changes: Any
) -> RenderedEmail:
    data = {**sample_context(kind, base_url=BASE_URL), **changes}
    context = parse_context(kind=kind, data=data)
    return render_email(kind=kind, context=context, language=language, timezone=timezone)


class TestRenderEmail:
    @pytest.mark.parametrize("language", LANGUAGES)
    @pytest.mark.parametrize("kind", sorted(KINDS))
    def test_every_kind_renders_in_every_language(self, kind: str, language: str) -> None:
        data = sample_context(kind, base_url=BASE_URL)
        context = parse_context(kind=kind, data=data)

        rendered = render_email(
            kind=kind, context=context, language=language, timezone="Europe/Warsaw"
        )

        assert rendered.subject and "\n" not in rendered.subject
        assert f'<html lang="{language}">' in rendered.html
        assert rendered.text.endswith("\n")
        assert not re.search(r"</?(p|strong|a|table|br)\b", rendered.text)
        for href in re.findall(r'href="([^"]*)"', rendered.html):
            assert href.startswith((f"{BASE_URL}/", "mailto:", "https://")), href
        lines = rendered.text.splitlines()
        for url in (action_url_of(context), data.get("exchange_url")):
            if url:
                assert url in lines, f"{url} is not alone on a line"
                assert f'href="{url}"' in rendered.html

    @pytest.mark.parametrize("kind", sorted(KINDS))
    def test_every_language_has_its_own_subject(self, kind: str) -> None:
        subjects = {_render(kind, language).subject for language in LANGUAGES}

        assert len(subjects) == len(LANGUAGES)

    def test_user_text_is_escaped_in_html_and_kept_in_text(self) -> None:
        rendered = _render(
            "changes_requested",
            exchange_title=HOSTILE_TITLE,
            note='Add the budget <img src=x onerror=alert(1)>\nand "timeline"',
        )

        assert "<script>" not in rendered.html and "<img" not in rendered.html
        assert "&lt;script&gt;" in rendered.html
        assert "&lt;img src=x onerror=alert(1)&gt;<br>" in rendered.html
        assert HOSTILE_TITLE in rendered.text
        assert '> and "timeline"' in rendered.text.splitlines()

    def test_subject_stays_on_one_line(self) -> None:
        rendered = _render("request_approved", exchange_title="Tox\r\nBcc: victim@evil.example")

        assert rendered.subject == "Your request “Tox Bcc: victim@evil.example” has been approved"

    def test_long_subject_is_shortened(self) -> None:
        rendered = _render("request_approved", exchange_title="x" * 400)

        assert len(rendered.subject) == 250 and rendered.subject.endswith("…")

    @pytest.mark.parametrize(
        ("language", "timezone", "expected"),
        [
            ("en", "Europe/Paris", f"Tuesday, 31 March 2026, 10:00{DASH}11:00"),
            ("fr", "Europe/Paris", f"mardi 31 mars 2026, 10:00{DASH}11:00"),
            ("de", "Europe/Berlin", f"Dienstag, 31. März 2026, 10:00{DASH}11:00"),
            ("pl", "Europe/Warsaw", f"wtorek, 31 marca 2026, 10:00{DASH}11:00"),
            ("en", "Europe/London", f"Tuesday, 31 March 2026, 09:00{DASH}10:00"),
            ("en", "America/New_York", f"Tuesday, 31 March 2026, 04:00{DASH}05:00"),
        ],
    )
    def test_meeting_time_is_in_the_recipients_language_and_zone(
        self, language: str, timezone: str, expected: str
    ) -> None:
        rendered = _render("meeting_confirmed", language, timezone)

        assert expected in rendered.text

    def test_slots_across_the_spring_change_show_each_offset(self) -> None:
        rendered = _render("slots_proposed", "en", "Europe/Paris")

        assert f"Friday, 27 March 2026, 10:00{DASH}11:00 (Central European Standard Time)" in (
            rendered.text
        )
        assert f"Monday, 30 March 2026, 14:00{DASH}15:00 (Central European Summer Time)" in (
            rendered.text
        )

    def test_polish_text_uses_polish_dates(self) -> None:
        rendered = _render("vetting_needed", "pl", "Europe/Warsaw")

        assert "Termin odpowiedzi: piątek, 20 marca 2026, godz. 17:00" in rendered.text

    def test_introduction_request_shows_no_contact_details(self) -> None:
        for language in LANGUAGES:
            rendered = _render("introduction_request", language)

            assert "@" not in rendered.text
            assert "mailto:" not in rendered.html

    def test_introduction_made_gives_the_partner_the_requesters_contact(self) -> None:
        rendered = _render(
            "introduction_made",
            recipient_side="partner",
            counterpart_organisation="NantesGene Therapeutics",
            counterpart_name="Claire Moreau",
            counterpart_email="claire@nantesgene.example",
            counterpart_website="",
        )

        assert "E-mail: claire@nantesgene.example" in rendered.text.splitlines()
        assert "Website" not in rendered.text
        assert "will propose a few time slots" in rendered.text

    @pytest.mark.parametrize(
        "outcome", ["completed", "withdrawn", "cancelled", "no_partner", "expired", "rejected"]
    )
    def test_exchange_closed_has_a_text_for_each_outcome(self, outcome: str) -> None:
        texts = {_render("exchange_closed", lang, outcome=outcome).text for lang in LANGUAGES}

        assert len(texts) == len(LANGUAGES)

    def test_outcome_wave_counts_months_in_each_language(self) -> None:
        assert _render("outcome_wave", "de", months=1).text.count("Vor 1 Monat wurden") == 1
        assert "Il y a 6 mois," in _render("outcome_wave", "fr").text
        assert "18 miesięcy temu" in _render("outcome_wave", "pl", months=18).text

    def test_unknown_language_is_refused(self) -> None:
        context = parse_context(kind="request_approved", data=sample_context("request_approved"))

        with pytest.raises(EmailContextError, match="language"):
            render_email(kind="request_approved", context=context, language="it", timezone="UTC")
