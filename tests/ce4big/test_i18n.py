import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from ce4big.domain import LANGUAGES, CooperationType, MeetingMode
from ce4big.i18n import (
    DEFAULT_LANGUAGE,
    LABELS,
    LOCALES_DIR,
    catalogue_path,
    format_datetime,
    format_span,
    label,
    negotiate_language,
    translate,
)

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [language for language in LANGUAGES if language != DEFAULT_LANGUAGE]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")
# Polish greets without the name ("Dzień dobry,"), by convention.
PLACEHOLDERS_LEFT_OUT = {("pl", "Hello %(recipient_name)s,")}


def _catalogue(language: str) -> Catalog:
    with catalogue_path(language).open("rb") as po:
        return read_po(po, locale=language)


def _template() -> Catalog:
    with (LOCALES_DIR / "messages.pot").open("rb") as pot:
        return read_po(pot)


def _placeholders(text: str) -> set[str]:
    return {a or b for a, b in PLACEHOLDER.findall(text)}


def _forms(value: object) -> list[str]:
    """A message's text, or each of its plural forms."""
    return [str(v) for v in value] if isinstance(value, tuple | list) else [str(value)]


def _key(message_id: object, context: str | None) -> tuple[str | None, str]:
    # Extraction names a plural message by its singular, as the catalogues do.
    return context, _forms(message_id)[0]


class TestCatalogues:
    @pytest.mark.parametrize("language", TRANSLATED)
    def test_every_message_is_translated_and_not_fuzzy(self, language: str) -> None:
        catalogue = _catalogue(language)
        for message in _template():
            if not message.id:
                continue
            translated = catalogue.get(message.id, context=message.context)
            assert translated is not None, f"{language}: {message.id!r} is missing"
            assert all(_forms(translated.string)), f"{language}: {message.id!r} is not translated"
            assert not translated.fuzzy, f"{language}: {message.id!r} is fuzzy"

    @pytest.mark.parametrize("language", TRANSLATED)
    def test_translations_keep_the_placeholders(self, language: str) -> None:
        for message in _catalogue(language):
            if not message.id or (language, message.id) in PLACEHOLDERS_LEFT_OUT:
                continue
            wanted = _placeholders(_forms(message.id)[-1])
            for form in _forms(message.string):
                assert _placeholders(form) == wanted, (language, message.id)

    @pytest.mark.parametrize("language", TRANSLATED)
    def test_catalogue_holds_no_message_the_sources_dropped(self, language: str) -> None:
        wanted = {_key(m.id, m.context) for m in _template() if m.id}
        held = {_key(m.id, m.context) for m in _catalogue(language) if m.id}

        assert held - wanted == set(), "run pybabel update (see the README)"

    def test_template_is_up_to_date_with_the_sources(self) -> None:
        with (ROOT / "babel.cfg").open() as config:
            method_map, options_map = parse_mapping_cfg(config)  # type: ignore[no-untyped-call]
        extracted = {
            (context, message if isinstance(message, str) else message[0])
            for _, _, message, _, context in extract_from_dir(
                ROOT, method_map, options_map, directory_filter=_source_directory
            )
        }
        held = {_key(m.id, m.context) for m in _template() if m.id}

        assert extracted == held, "run pybabel extract (see the README)"

    def test_french_sets_no_break_spaces_before_two_part_punctuation(self) -> None:
        for message in _catalogue("fr"):
            if not message.id:
                continue
            for text in _forms(message.string):
                assert not re.search(r" [:;!?»]|« ", text), message.id
                assert "'" not in text, message.id


def _source_directory(path: str) -> bool:
    name = Path(path).name
    return not name.startswith((".", "_")) and name not in {"tests", "bench", "migrations"}


class TestTranslate:
    def test_english_is_the_message_itself(self) -> None:
        assert translate("en", "Decline") == "Decline"

    def test_placeholders_are_filled_in_the_translation(self) -> None:
        assert translate("de", "Slot %(n)s", n=2) == "Termin 2"

    def test_french_punctuation_comes_from_the_catalogue(self) -> None:
        assert translate("fr", "How did the meeting go?") == (
            "Comment s\N{RIGHT SINGLE QUOTATION MARK}est passé le rendez-vous\N{NO-BREAK SPACE}?"
        )


class TestLabels:
    @pytest.mark.parametrize("vocabulary", list(LABELS))
    def test_every_value_of_every_vocabulary_has_a_label(self, vocabulary: type[StrEnum]) -> None:
        assert set(LABELS[vocabulary]) == set(vocabulary)

    def test_labels_are_translated(self) -> None:
        assert label("pl", MeetingMode, "phone") == "rozmowa telefoniczna"
        assert label("fr", CooperationType, "licensing") == "licence"

    def test_an_unknown_value_is_shown_plainly(self) -> None:
        assert label("de", CooperationType, "joint_venture") == "joint venture"


class TestNegotiateLanguage:
    @pytest.mark.parametrize(
        ("preferred", "cluster", "expected"),
        [
            ("de", "fr", "de"),
            (None, "pl", "pl"),
            ("", "fr", "fr"),
            ("fr-BE", None, "fr"),
            ("PL_pl", None, "pl"),
            ("es", "de", "de"),
            ("es", "it", "en"),
            (None, None, "en"),
        ],
    )
    def test_prefers_the_user_then_the_cluster_then_english(
        self, preferred: str | None, cluster: str | None, expected: str
    ) -> None:
        assert negotiate_language(preferred, cluster) == expected

    @pytest.mark.parametrize(
        ("stored", "header", "chosen"),
        [
            ("pl", "fr-FR,fr;q=0.9", "pl"),
            (None, "es-ES,es;q=0.9,de;q=0.8,fr;q=0.7", "de"),
            (None, "en;q=0.2,fr-BE;q=0.6", "fr"),
            (None, "fr;q=0,pl;q=0.1", "pl"),
            ("xx", None, "en"),
            (None, "q=;;,", "en"),
        ],
    )
    def test_prefers_the_link_then_the_browser_then_english(
        self, stored: str | None, header: str | None, chosen: str
    ) -> None:
        assert negotiate_language(stored, accept_language=header) == chosen


class TestFormatting:
    START = datetime(2026, 3, 31, 8, 0, tzinfo=UTC)
    END = datetime(2026, 3, 31, 9, 0, tzinfo=UTC)

    def test_a_moment_joins_date_and_time_in_the_language(self) -> None:
        assert format_datetime(self.START, zone="Europe/Warsaw", language="pl") == (
            "wtorek, 31 marca 2026, godz. 10:00 (czas środkowoeuropejski letni)"
        )

    def test_a_span_within_a_day_names_the_day_once(self) -> None:
        assert format_span(self.START, self.END, zone="Europe/Paris", language="en") == (
            "Tuesday, 31 March 2026, 10:00\N{EN DASH}11:00 (Central European Summer Time)"
        )
