"""A refused form, told back to its author: each error next to its field (by the id of its
control) and in the summary at the top, in the reader's language. The rules themselves live in
the request bodies and the workflow's validators; this only says where each refusal belongs."""

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.datastructures import FormData

from ce4big.errors import AppError
from ce4big.i18n import N_

GENERAL = ""
NOT_RECORDED = N_("This could not be recorded. Nothing was changed.")
STAGE_MOVED_ON = N_("This step is no longer open: the exchange has moved on. Nothing was recorded.")


def form_text(form: FormData, name: str) -> str:
    """A text field of a POSTed form, trimmed; "" when absent (or a file)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class FormError:
    # The id of the control the error is about ("" for the whole form).
    field: str
    # An English msgid, translated where it is shown.
    message: str
    # The rule's own words, when no field of the form explains it.
    detail: str = ""


class FormErrors(dict[str, FormError]):
    """Errors by control id, in the order they were found."""

    def add(self, field: str, message: str, detail: str = "") -> None:
        self.setdefault(field, FormError(field, message, detail))


def from_validation(
    error: ValidationError, messages: Mapping[str, str], controls: Mapping[str, str] | None = None
) -> FormErrors:
    """`messages` maps a body's field to its explanation; `controls`, to its control's id when
    that differs from the field's name."""
    errors = FormErrors()
    for problem in error.errors():
        name = str(problem["loc"][0]) if problem["loc"] else GENERAL
        control = (controls or {}).get(name, name)
        if name in messages:
            errors.add(control, messages[name])
        else:
            errors.add(GENERAL, NOT_RECORDED, f"{name}: {problem['msg']}")
    return errors


def from_refusal(
    error: AppError, messages: Mapping[str, str], controls: Mapping[str, str] | None = None
) -> FormErrors:
    """A refusal whose message starts with `field:` (as the validators write them) lands on
    that field; a stage conflict and anything else go to the summary."""
    errors = FormErrors()
    name, colon, _ = error.message.partition(":")
    if error.status_code == 409:
        errors.add(GENERAL, STAGE_MOVED_ON, error.message)
    elif colon and name in messages:
        errors.add((controls or {}).get(name, name), messages[name])
    else:
        errors.add(GENERAL, NOT_RECORDED, error.message)
    return errors
