"""ce4big/catalogue/commands.py through `ce4big`: import, export, match."""

import json
from pathlib import Path

import pytest
from sqlmodel import Session

from ce4big.models import OrganisationProfile
from ce4big.settings import Settings
from cli import main as cli
from tests.ce4big.catalogue.samples import CATALOGUE, csv_text, load, row
from tests.factories import add_organisation


@pytest.fixture
def run(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> "object":
    monkeypatch.setattr(cli, "_settings", lambda: settings)

    def invoke(*argv: str) -> int:
        with pytest.raises(SystemExit) as exited:
            cli.main(list(argv))
        return int(exited.value.code or 0)

    return invoke


class TestImportCommand:
    def test_imports_then_exports_the_same_file(
        self, run: "object", tmp_path: Path, session: Session
    ) -> None:
        clusters = ["atlanpole", "biowin", "biom", "klsk"]
        ordered = sorted(CATALOGUE, key=lambda r: (clusters.index(r["cluster"]), r["id"]))
        source = tmp_path / "catalogue.csv"
        source.write_text(csv_text(ordered), encoding="utf-8")
        target = tmp_path / "export.csv"

        assert run("catalogue", "import", str(source)) == 0  # type: ignore[operator]
        assert run("catalogue", "export", str(target)) == 0  # type: ignore[operator]

        assert target.read_bytes() == source.read_bytes()

    def test_an_invalid_file_imports_nothing_and_lists_every_bad_row(
        self, run: "object", tmp_path: Path, capsys: pytest.CaptureFixture[str], session: Session
    ) -> None:
        source = tmp_path / "bad.csv"
        source.write_text(
            csv_text([row("ok-1", "biom", "cro", ""), row("bad-1", "mars", "cro", "")]),
            encoding="utf-8",
        )

        assert run("catalogue", "import", str(source)) == 1  # type: ignore[operator]

        err = capsys.readouterr().err
        assert "nothing imported" in err
        assert f"{source}:3: cluster: unknown cluster 'mars'" in err
        assert run("catalogue", "export") == 0  # type: ignore[operator]
        assert "ok-1" not in capsys.readouterr().out


class TestReindexCommand:
    def test_profiles_entries_written_without_a_profile(
        self, run: "object", session: Session, capsys: pytest.CaptureFixture[str]
    ) -> None:
        add_organisation(session, "raw-1", "biom", "cro", description="Comet assay")
        session.commit()

        assert run("catalogue", "reindex") == 0  # type: ignore[operator]

        assert capsys.readouterr().out.startswith("1 catalogue entries profiled again")
        assert session.get(OrganisationProfile, "raw-1") is not None


class TestMatchCommand:
    def test_prints_a_json_array_best_first(
        self, run: "object", tmp_path: Path, session: Session, capsys: pytest.CaptureFixture[str]
    ) -> None:
        load(session)
        request = tmp_path / "request.json"
        request.write_text(
            json.dumps(
                {
                    "id": "r-1",
                    "title": "GLP genotoxicity battery",
                    "description": "Ames test and in vitro micronucleus.",
                    "home_cluster": "biowin",
                    "target_clusters": [],
                    "partner_kinds": ["cro"],
                    "required_certifications": ["GLP"],
                    "cooperation_type": "service_agreement",
                    "language": "en",
                    "judgments": {"en-tox": 3},
                }
            ),
            encoding="utf-8",
        )

        assert run("match", "--request", str(request), "--top", "2", "--json") == 0  # type: ignore[operator]

        printed = json.loads(capsys.readouterr().out)
        assert isinstance(printed, list) and 1 <= len(printed) <= 2
        assert set(printed[0]) == {"organisation_id", "score", "reasons"}
        assert printed[0]["organisation_id"] == "en-tox"
        assert isinstance(printed[0]["score"], float)
        assert all(isinstance(r, str) for r in printed[0]["reasons"])
        assert [p["score"] for p in printed] == sorted((p["score"] for p in printed), reverse=True)

    def test_refuses_a_request_without_its_fields(
        self, run: "object", tmp_path: Path, capsys: pytest.CaptureFixture[str], session: Session
    ) -> None:
        request = tmp_path / "request.json"
        request.write_text('{"title": "only a title"}', encoding="utf-8")

        assert run("match", "--request", str(request), "--json") == 1  # type: ignore[operator]
        assert "description: required text" in capsys.readouterr().err

    def test_refuses_a_file_that_is_not_json(
        self, run: "object", tmp_path: Path, capsys: pytest.CaptureFixture[str], session: Session
    ) -> None:
        request = tmp_path / "request.json"
        request.write_text("title: no", encoding="utf-8")

        assert run("match", "--request", str(request), "--json") == 1  # type: ignore[operator]
        assert "not a JSON request" in capsys.readouterr().err
