"""The catalogue's CSV exchange format (DESIGN section 3): parse with a full report, write back."""

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from ce4big.catalogue.vocabulary import canonical_certification
from ce4big.domain import CERTIFICATIONS, CLUSTER_IDS, OrganisationKind
from ce4big.errors import Invalid

HEADER = (
    "id",
    "name",
    "cluster",
    "kind",
    "country",
    "city",
    "website",
    "description",
    "services",
    "technologies",
    "therapeutic_areas",
    "modalities",
    "stages",
    "certifications",
    "languages",
    "contact_name",
    "contact_email",
    "accepting_new_projects",
)
LIST_FIELDS = (
    "services",
    "technologies",
    "therapeutic_areas",
    "modalities",
    "stages",
    "certifications",
    "languages",
)
MAX_LENGTHS = {
    "id": 64,
    "name": 200,
    "country": 2,
    "city": 120,
    "website": 300,
    "description": 5000,
    "contact_name": 200,
    "contact_email": 254,
}
MAX_LIST_ITEMS = 50
MAX_ITEM_LENGTH = 200
TRUE_WORDS = frozenset({"true", "yes", "1", "y", "oui", "ja", "tak"})
FALSE_WORDS = frozenset({"false", "no", "0", "n", "non", "nein", "nie"})
KINDS = frozenset(k.value for k in OrganisationKind)
CERTIFICATIONS_BY_KEY = {c.casefold(): c for c in CERTIFICATIONS}
LANGUAGE_CODE = re.compile(r"[a-z]{2}")
# A spreadsheet runs a cell that starts with = + - @ (or a tab or CR) as a formula: the export
# writes such a cell behind an apostrophe, which the import takes off again (lossless both ways);
# the import refuses such a cell written bare, which a spreadsheet would already have run.
_FORMULA_LIKE = re.compile(r"'*[=+\-@\t\r]")
_FORMULA = re.compile(r"[=+\-@]")


@dataclass(frozen=True)
class RowError:
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


@dataclass
class CatalogueRow:
    """One validated organisation, as the CSV carries it."""

    id: str
    name: str
    cluster: str
    kind: str
    country: str
    city: str
    website: str
    description: str
    services: list[str]
    technologies: list[str]
    therapeutic_areas: list[str]
    modalities: list[str]
    stages: list[str]
    certifications: list[str]
    languages: list[str]
    contact_name: str
    contact_email: str
    accepting_new_projects: bool
    line: int = field(default=0, compare=False)


class CatalogueInvalid(Invalid):
    """The whole file is refused; `errors` lists every bad row."""

    def __init__(self, errors: list[RowError]) -> None:
        shown = "; ".join(str(e) for e in errors[:20])
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        super().__init__(f"{len(errors)} error(s), nothing imported: {shown}{more}")
        self.errors = errors

    def details(self) -> dict[str, Any]:
        return {
            "rows": [{"line": e.line, "field": e.field, "reason": e.reason} for e in self.errors]
        }


# Plain ASCII addresses, the vast majority, are accepted here; anything else (international
# names, quoted parts, odd domains) goes through email-validator, which is 20 times slower.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9_+-]{1,64}(?:\.[A-Za-z0-9_+-]+)*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,63})"
)


def email_problem(address: str) -> str | None:
    """Why `address` is no e-mail address, or None when it is one."""
    plain = _PLAIN_EMAIL.fullmatch(address)
    if (
        plain
        and len(address) <= 254
        and len(address.split("@")[0]) <= 64
        and plain.group(1).lower() not in SPECIAL_USE_DOMAIN_NAMES
    ):
        return None
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogueInvalid(
            [RowError(data[: exc.start].count(b"\n") + 1, "file", "not UTF-8 text")]
        ) from None


def _delimiter(header_line: str) -> str:
    return ";" if header_line.count(";") > header_line.count(",") else ","


def neutralise_formula(cell: str) -> str:
    return "'" + cell if _FORMULA_LIKE.match(cell) else cell


def _restore_formula(cell: str) -> str:
    return cell[1:] if cell.startswith("'") and _FORMULA_LIKE.match(cell[1:]) else cell


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(";") if item.strip()]


def _validate(raw: dict[str, str], line: int, errors: list[RowError]) -> CatalogueRow | None:
    before = len(errors)

    def fail(field_name: str, reason: str) -> None:
        errors.append(RowError(line, field_name, reason))

    for name in HEADER:
        cell = (raw.get(name) or "").strip()
        if "\x00" in cell:
            # PostgreSQL text cannot hold it: refused here rather than by the database.
            fail(name, "contains the NUL character")
        if _FORMULA.match(cell):
            fail(
                name,
                f"starts with {cell[0]!r}, which a spreadsheet runs as a formula: "
                f"write it as '{cell[:20]} to keep it as text",
            )
    values = {k: _restore_formula((raw.get(k) or "").strip()) for k in HEADER}
    for name in ("id", "name", "cluster", "kind", "country"):
        if not values[name]:
            fail(name, "required")
    for name, limit in MAX_LENGTHS.items():
        if len(values[name]) > limit:
            fail(name, f"longer than {limit} characters")
    if values["cluster"] and values["cluster"] not in CLUSTER_IDS:
        fail("cluster", f"unknown cluster {values['cluster']!r} ({', '.join(sorted(CLUSTER_IDS))})")
    if values["kind"] and values["kind"] not in KINDS:
        fail("kind", f"unknown kind {values['kind']!r} ({', '.join(sorted(KINDS))})")
    if values["country"] and not (len(values["country"]) == 2 and values["country"].isalpha()):
        fail("country", "must be a two-letter country code")
    if values["website"]:
        parts = urlsplit(values["website"])
        if parts.scheme not in ("http", "https") or not parts.netloc or " " in values["website"]:
            fail("website", f"not an http(s) URL: {values['website']!r}")
    if values["contact_email"]:
        problem = email_problem(values["contact_email"])
        if problem:
            fail("contact_email", f"not an e-mail address: {problem}")
    accepting = values["accepting_new_projects"].lower()
    if accepting not in TRUE_WORDS | FALSE_WORDS:
        fail("accepting_new_projects", f"not a boolean: {values['accepting_new_projects']!r}")

    lists = {name: _split_list(values[name]) for name in LIST_FIELDS}
    for name, items in lists.items():
        if len(items) > MAX_LIST_ITEMS:
            fail(name, f"more than {MAX_LIST_ITEMS} items")
        if any(len(item) > MAX_ITEM_LENGTH for item in items):
            fail(name, f"an item is longer than {MAX_ITEM_LENGTH} characters")
    certifications = []
    for item in lists["certifications"]:
        # Brokers' sheets say BPL, BPF or Gute Laborpraxis as often as GLP or GMP.
        known = CERTIFICATIONS_BY_KEY.get(item.casefold()) or canonical_certification(item)
        if known is None:
            fail("certifications", f"unknown certification {item!r}")
        else:
            certifications.append(known)
    lists["certifications"] = certifications
    # Spoken languages, not the app's: Belgian members work in Dutch too.
    for item in lists["languages"]:
        if not LANGUAGE_CODE.fullmatch(item):
            fail("languages", f"not a two-letter language code: {item!r}")

    if len(errors) > before:
        return None
    return CatalogueRow(
        id=values["id"],
        name=values["name"],
        cluster=values["cluster"],
        kind=values["kind"],
        country=values["country"].upper(),
        city=values["city"],
        website=values["website"],
        description=values["description"],
        contact_name=values["contact_name"],
        contact_email=values["contact_email"],
        accepting_new_projects=accepting in TRUE_WORDS,
        line=line,
        **lists,
    )


def parse_catalogue_csv(data: bytes) -> list[CatalogueRow]:
    """Every row valid, or CatalogueInvalid listing every problem with its line and field."""
    text = _decode(data)
    if not text.strip():
        raise CatalogueInvalid([RowError(1, "file", "empty file")])
    reader = csv.DictReader(
        io.StringIO(text, newline=""), delimiter=_delimiter(text.split("\n")[0])
    )
    try:
        return _read_rows(reader)
    except csv.Error as exc:
        # A field over the csv module's size limit, say, in the record after the last one read.
        problem = RowError(reader.line_num + 1, "file", f"not readable as CSV: {exc}")
        raise CatalogueInvalid([problem]) from None


def _read_rows(reader: "csv.DictReader[str]") -> list[CatalogueRow]:
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [h for h in HEADER if h not in header]
    unknown = [h for h in header if h not in HEADER]
    if missing or unknown:
        reason = "; ".join(
            part
            for part in (
                f"missing columns: {', '.join(missing)}" if missing else "",
                f"unknown columns: {', '.join(unknown)}" if unknown else "",
            )
            if part
        )
        raise CatalogueInvalid([RowError(1, "header", reason)])
    reader.fieldnames = header

    errors: list[RowError] = []
    rows: list[CatalogueRow] = []
    first_line: dict[str, int] = {}
    line = reader.line_num
    for raw in reader:
        start = line + 1
        line = reader.line_num
        if None in raw:
            errors.append(RowError(start, "row", "more fields than the header"))
            continue
        if not any((v or "").strip() for v in raw.values()):
            continue
        row = _validate(raw, start, errors)
        if row is None:
            continue
        if row.id in first_line:
            errors.append(
                RowError(
                    start, "id", f"duplicate id {row.id!r} (first on line {first_line[row.id]})"
                )
            )
            continue
        first_line[row.id] = start
        rows.append(row)
    if errors:
        raise CatalogueInvalid(errors)
    return rows


def write_catalogue_csv(rows: Iterable[dict[str, Any]]) -> str:
    """Rows (dicts keyed by the header) as CSV text, lists joined by `;`, formulas defused."""
    out = io.StringIO(newline="")
    # CRLF, as RFC 4180 and spreadsheet programs write it.
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in rows:
        writer.writerow(
            [
                neutralise_formula(";".join(row[name]))
                if name in LIST_FIELDS
                else ("true" if row[name] else "false")
                if name == "accepting_new_projects"
                else neutralise_formula(str(row[name] or ""))
                for name in HEADER
            ]
        )
    return out.getvalue()
