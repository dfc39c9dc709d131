"""ce4big/catalogue/csvio.py: the CSV exchange format, its validation report and its writer."""

import pytest

from ce4big.catalogue.csvio import (
    HEADER,
    CatalogueInvalid,
    RowError,
    parse_catalogue_csv,
    write_catalogue_csv,
)
from tests.ce4big.catalogue.samples import CATALOGUE, csv_text, row


def errors_of(data: bytes) -> list[RowError]:
    with pytest.raises(CatalogueInvalid) as caught:
        parse_catalogue_csv(data)
    return caught.value.errors


def one_bad_row(**values: str) -> list[RowError]:
    good = row("good-1", "biom", "cro", "A fine CRO.")
    bad = row("bad-1", "biom", "cro", "A CRO with one problem.")
    bad.update(values)
    return errors_of(csv_text([good, bad]).encode())


class TestParseCatalogueCsv:
    def test_reads_every_field_of_a_valid_file(self) -> None:
        rows = parse_catalogue_csv(csv_text(CATALOGUE).encode())

        assert [r.id for r in rows] == [r["id"] for r in CATALOGUE]
        first = rows[0]
        assert first.cluster == "atlanpole"
        assert first.certifications == ["GLP"]
        assert first.languages == ["fr", "en"]
        assert first.accepting_new_projects is True
        assert first.line == 2
        assert rows[-1].accepting_new_projects is False

    def test_reads_a_utf8_file_with_a_byte_order_mark(self) -> None:
        rows = parse_catalogue_csv(b"\xef\xbb\xbf" + csv_text(CATALOGUE[:2]).encode())

        assert [r.id for r in rows] == ["fr-tox", "de-vec"]

    def test_reads_a_semicolon_separated_excel_export(self) -> None:
        text = csv_text([row("x-1", "biom", "cro", "Toxikologie", services="Ames;Comet")], ";")

        (parsed,) = parse_catalogue_csv(text.encode())

        assert parsed.services == ["Ames", "Comet"]
        assert parsed.description == "Toxikologie"

    def test_accepts_certification_synonyms_in_other_languages(self) -> None:
        (parsed,) = parse_catalogue_csv(
            csv_text([row("x-1", "atlanpole", "cro", "", certifications="BPL;bpf")]).encode()
        )

        assert parsed.certifications == ["GLP", "GMP"]

    def test_accepts_any_spoken_language_code(self) -> None:
        (parsed,) = parse_catalogue_csv(
            csv_text([row("x-1", "biowin", "cro", "", languages="fr;nl;en")]).encode()
        )

        assert parsed.languages == ["fr", "nl", "en"]

    def test_skips_blank_lines(self) -> None:
        text = csv_text(CATALOGUE[:1]) + ",,,,,,,,,,,,,,,,,\r\n"

        assert len(parse_catalogue_csv(text.encode())) == 1

    @pytest.mark.parametrize(
        ("values", "field", "reason"),
        [
            ({"name": ""}, "name", "required"),
            ({"cluster": ""}, "cluster", "required"),
            ({"cluster": "paris"}, "cluster", "unknown cluster 'paris'"),
            ({"kind": "bakery"}, "kind", "unknown kind 'bakery'"),
            ({"country": "F1"}, "country", "two-letter country code"),
            ({"website": "www.example.com"}, "website", "not an http(s) URL"),
            ({"contact_email": "someone@"}, "contact_email", "not an e-mail address"),
            ({"accepting_new_projects": "maybe"}, "accepting_new_projects", "not a boolean"),
            ({"certifications": "GLP;Michelin"}, "certifications", "unknown certification"),
            ({"languages": "english"}, "languages", "not a two-letter language code"),
            ({"city": "x" * 121}, "city", "longer than 120 characters"),
            ({"services": ";".join(f"s{i}" for i in range(51))}, "services", "more than 50 items"),
            ({"technologies": "t" * 201}, "technologies", "longer than 200 characters"),
        ],
    )
    def test_reports_each_kind_of_bad_value_with_its_line_and_field(
        self, values: dict[str, str], field: str, reason: str
    ) -> None:
        (error,) = one_bad_row(**values)

        assert (error.line, error.field) == (3, field)
        assert reason in error.reason

    def test_reports_a_missing_id(self) -> None:
        (error,) = one_bad_row(id="")

        assert (error.line, error.field, error.reason) == (3, "id", "required")

    def test_reports_a_duplicate_id_with_the_line_of_the_first(self) -> None:
        text = csv_text([row("dup", "biom", "cro", "one"), row("dup", "klsk", "cro", "two")])

        (error,) = errors_of(text.encode())

        assert (error.line, error.field) == (3, "id")
        assert "first on line 2" in error.reason

    def test_reports_a_row_with_more_fields_than_the_header(self) -> None:
        text = csv_text(CATALOGUE[:1]) + csv_text(CATALOGUE[1:2]).splitlines()[1] + ",extra\r\n"

        (error,) = errors_of(text.encode())

        assert (error.line, error.field) == (3, "row")

    def test_reports_every_bad_row_not_only_the_first(self) -> None:
        rows = [
            row("a", "biom", "bakery", ""),
            row("b", "biom", "cro", ""),
            row("c", "nowhere", "cro", "", contact_email="not-an-address"),
        ]

        errors = errors_of(csv_text(rows).encode())

        assert [(e.line, e.field) for e in errors] == [
            (2, "kind"),
            (4, "cluster"),
            (4, "contact_email"),
        ]

    def test_counts_lines_of_quoted_multiline_descriptions(self) -> None:
        rows = [row("a", "biom", "cro", "first line\nsecond line"), row("b", "x", "cro", "")]

        (error,) = errors_of(csv_text(rows).encode())

        assert (error.line, error.field) == (4, "cluster")

    def test_refuses_a_header_with_missing_or_unknown_columns(self) -> None:
        header = ",".join([h for h in HEADER if h != "kind"] + ["colour"])

        (error,) = errors_of(f"{header}\r\n".encode())

        assert (error.line, error.field) == (1, "header")
        assert "missing columns: kind" in error.reason
        assert "unknown columns: colour" in error.reason

    def test_refuses_a_file_that_is_not_utf8(self) -> None:
        data = csv_text([row("a", "atlanpole", "cro", "Génotoxicité")]).encode("latin-1")

        (error,) = errors_of(data)

        assert (error.line, error.field, error.reason) == (2, "file", "not UTF-8 text")

    def test_refuses_an_empty_file(self) -> None:
        (error,) = errors_of(b"  \n")

        assert error.field == "file"

    def test_the_error_body_lists_every_bad_row(self) -> None:
        with pytest.raises(CatalogueInvalid) as caught:
            parse_catalogue_csv(csv_text([row("a", "x", "y", "")]).encode())

        rows = caught.value.details()["rows"]
        assert {"line": 2, "field": "cluster", "reason": rows[0]["reason"]} == rows[0]
        assert [r["field"] for r in rows] == ["cluster", "kind"]


class TestWriteCatalogueCsv:
    def test_round_trips_a_file_byte_for_byte(self) -> None:
        text = csv_text(CATALOGUE)
        rows = parse_catalogue_csv(text.encode())

        written = write_catalogue_csv({name: getattr(r, name) for name in HEADER} for r in rows)

        assert written == text
        assert parse_catalogue_csv(written.encode()) == rows

    def test_cells_a_spreadsheet_would_run_as_formulas_are_defused_and_read_back(self) -> None:
        rows = parse_catalogue_csv(csv_text(CATALOGUE[:1]).encode())
        evil = {name: getattr(rows[0], name) for name in HEADER}
        evil["name"] = '=HYPERLINK("http://evil.example","click")'
        evil["city"] = "'=kept as typed"
        evil["services"] = ["+cmd|' /C calc'!A0", "toxicology"]
        evil["contact_name"] = "@SUM(1+1)"

        written = write_catalogue_csv([evil])
        cells = written.splitlines()[1]

        assert "'=HYPERLINK" in cells and "'@SUM" in cells and "'+cmd" in cells
        assert "''=kept as typed" in cells
        again = parse_catalogue_csv(written.encode())[0]
        assert again.name == evil["name"] and again.city == "'=kept as typed"
        assert again.services == evil["services"] and again.contact_name == "@SUM(1+1)"

    def test_a_bare_formula_cell_is_refused_naming_the_line_and_field(self) -> None:
        evil = [dict(CATALOGUE[0]), {**CATALOGUE[1], "name": '=HYPERLINK("http://x.example")'}]

        errors = errors_of(csv_text(evil).encode())

        assert [(e.line, e.field) for e in errors] == [(3, "name")]
        assert "formula" in errors[0].reason and "'=HYPERLINK" in errors[0].reason
