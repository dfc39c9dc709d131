"""Every e-mail kind in every language, rendered from the sample contexts: what the development
mailbox shows under /dev/mailbox/previews. The composition roots hand it to the web app."""

from collections.abc import Sequence

from ce4big.domain import LANGUAGES
from emails.contexts import KINDS, choose_timezone, parse_context
from emails.render import RenderedEmail, default_renderer
from emails.samples import sample_context

PREVIEW_TIMEZONE = "Europe/Brussels"


class EmailPreviews:
    kinds: Sequence[str] = tuple(KINDS)
    languages: Sequence[str] = tuple(LANGUAGES)
    timezone = PREVIEW_TIMEZONE

    def render(self, kind: str, language: str, *, base_url: str) -> RenderedEmail:
        context = parse_context(kind=kind, data=sample_context(kind, base_url=base_url))
        return default_renderer().render(
            kind=kind,
            context=context,
            language=language,
            timezone=choose_timezone(PREVIEW_TIMEZONE, None),
        )
