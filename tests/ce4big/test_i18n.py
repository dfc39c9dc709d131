from ce4big.domain import LANGUAGES, CooperationType, MeetingMode
from ce4big.i18n import BABEL_LOCALES, DATETIME_PATTERNS, LABELS


class TestLabels:
    def test_every_cooperation_type_has_a_label_in_every_language(self) -> None:
        for language in LANGUAGES:
            assert set(LABELS["cooperation"][language]) == {c.value for c in CooperationType}

    def test_every_meeting_mode_has_a_label_in_every_language(self) -> None:
        for language in LANGUAGES:
            assert set(LABELS["meeting_mode"][language]) == {m.value for m in MeetingMode}

    def test_every_language_has_a_locale_and_a_date_pattern(self) -> None:
        assert set(BABEL_LOCALES) == set(DATETIME_PATTERNS) == set(LANGUAGES)
