"""A small multilingual catalogue written for these tests (never the shared data)."""

import csv
import io
from typing import Any

from sqlmodel import Session

from ce4big.catalogue.csvio import HEADER, parse_catalogue_csv
from ce4big.catalogue.store import upsert_organisations


def row(ident: str, cluster: str, kind: str, description: str, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": ident,
        "name": f"Organisation {ident}",
        "cluster": cluster,
        "kind": kind,
        "country": {"atlanpole": "FR", "biowin": "BE", "biom": "DE", "klsk": "PL"}.get(
            cluster, "FR"
        ),
        "city": "",
        "website": f"https://{ident}.example",
        "description": description,
        "services": "",
        "technologies": "",
        "therapeutic_areas": "",
        "modalities": "",
        "stages": "",
        "certifications": "",
        "languages": "en",
        "contact_name": "Contact Person",
        "contact_email": f"contact@{ident}.example",
        "accepting_new_projects": "true",
    }
    base.update(values)
    return base


CATALOGUE = [
    row(
        "fr-tox",
        "atlanpole",
        "cro",
        "Laboratoire de toxicologie réglementaire certifié BPL : génotoxicité (test d'Ames, "
        "test du micronoyau) et toxicité à doses répétées chez le rongeur.",
        certifications="GLP",
        languages="fr;en",
    ),
    row(
        "de-vec",
        "biom",
        "cdmo",
        "Auftragshersteller für rekombinante AAV-Vektoren: Prozessentwicklung und GMP-Herstellung "
        "klinischer Chargen für Gentherapie-Studien der Phasen I bis II.",
        certifications="GMP",
        languages="de;en",
    ),
    row(
        "pl-onco",
        "klsk",
        "cro",
        "Badania przedkliniczne w onkologii: ksenoprzeszczepy pochodzące od pacjenta (PDX) raka "
        "jelita grubego i płuca, hamowanie wzrostu guza.",
        languages="pl;en",
    ),
    row(
        "en-cell",
        "biowin",
        "cdmo",
        "GMP manufacturing of autologous CAR-T cell therapies for phase I and II clinical trials.",
        certifications="GMP;ISO 9001",
    ),
    row(
        "en-bulk",
        "biowin",
        "core_facility",
        "Genomics core facility offering bulk RNA-seq and whole-genome sequencing. "
        "Single-cell workflows are not offered.",
    ),
    row(
        "en-sc",
        "klsk",
        "core_facility",
        "Single-cell RNA sequencing (10x Genomics) of tumour biopsies with bioinformatic analysis.",
    ),
    row(
        "en-tox",
        "biom",
        "cro",
        "GLP genetic toxicology CRO: Ames test, in vitro micronucleus and comet assay.",
        certifications="GLP",
    ),
    row(
        "closed-tox",
        "klsk",
        "cro",
        "GLP genetic toxicology: Ames test and micronucleus assays.",
        certifications="GLP",
        accepting_new_projects="false",
    ),
]


def csv_text(rows: list[dict[str, Any]], delimiter: str = ",") -> str:
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=HEADER, delimiter=delimiter, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def load(session: Session, rows: list[dict[str, Any]] | None = None) -> None:
    upsert_organisations(
        session=session, rows=parse_catalogue_csv(csv_text(rows or CATALOGUE).encode())
    )
    session.commit()
