"""The `ce4big` command line."""

import argparse
import asyncio
import gc
import logging
import re
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pydantic import ValidationError

from ce4big.errors import AppError
from ce4big.settings import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI


class CommandError(Exception):
    """A one-line error for the user; the command exits 1."""


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise CommandError(f"configuration: {field}: {first['msg']}") from None


# The path part after which a URL's credential stands: an e-mailed action link, a sign-in link,
# the JSON side of an action link.
_TOKEN_IN_PATH = re.compile(r"(/t/|/login/|/api/v1/actions/)[^/?#\s\"]+")


def redact_link_tokens(text: str) -> str:
    return _TOKEN_IN_PATH.sub(r"\1…", text)


class RedactLinkTokens(logging.Filter):
    """uvicorn's access lines name each request's path, and a link's path is its credential:
    the token becomes `…` before any handler formats the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_link_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_link_tokens(a) if isinstance(a, str) else a for a in record.args
            )
        return True


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # On the logger, not a handler: uvicorn's own logging configuration replaces the handlers
    # and keeps a logger's filters.
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactLinkTokens) for f in access.filters):
        access.addFilter(RedactLinkTokens())


def cmd_dev(_args: argparse.Namespace) -> int:
    from cli.devstack import run_dev

    _configure_logging()
    return asyncio.run(run_dev(_settings()))


def cmd_api(_args: argparse.Namespace) -> int:
    import uvicorn

    from api.main import create_app, serving_refusal
    from emails.previews import EmailPreviews
    from emails.signin import SignInMailer

    settings = _settings()
    refusal = serving_refusal(settings, settings.ce4big_host)
    if refusal is not None:
        raise CommandError(refusal)
    _configure_logging()
    if settings.web_processes > 1:
        # uvicorn's own supervisor binds the port once and runs (and restarts) that many
        # processes on it, each building the app by name.
        uvicorn.run(
            "cli.main:web_app",
            factory=True,
            workers=settings.web_processes,
            host=settings.ce4big_host,
            port=settings.ce4big_port,
        )
        return 0
    app = create_app(settings, mail_previews=EmailPreviews(), sign_in_mailer=SignInMailer(settings))
    uvicorn.run(app, host=settings.ce4big_host, port=settings.ce4big_port)
    return 0


def web_app() -> "FastAPI":
    """The app of one of `ce4big api`'s web processes when WEB_PROCESSES is over 1."""
    from api.main import create_app
    from emails.previews import EmailPreviews
    from emails.signin import SignInMailer

    settings = _settings()
    _configure_logging()
    return create_app(
        settings, mail_previews=EmailPreviews(), sign_in_mailer=SignInMailer(settings)
    )


def cmd_worker(_args: argparse.Namespace) -> int:
    import worker

    worker.main()
    return 0


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    from ce4big.db import upgrade_database

    settings = _settings()
    upgrade_database(settings.database_url)
    print(f"database at {settings.database_url.split('@')[-1]} is up to date")
    return 0


def cmd_seed_demo(_args: argparse.Namespace) -> int:
    from ce4big.db import make_engine, session_scope
    from ce4big.seed import seed_demo

    settings = _settings()
    with session_scope(make_engine(settings.database_url)) as session:
        report = seed_demo(session=session)
    print(report)
    return 0


def cmd_users_add(args: argparse.Namespace) -> int:
    from ce4big.db import make_engine, session_scope
    from ce4big.users import add_user

    settings = _settings()
    with session_scope(make_engine(settings.database_url)) as session:
        user = add_user(
            session=session,
            email=args.email,
            role=args.role,
            cluster_id=args.cluster,
            organisation_id=args.organisation,
            name=args.name or "",
            language=args.language,
        )
        print(f"user {user.email} ({user.role}) saved with id {user.id}")
    return 0


def cmd_users_active(args: argparse.Namespace) -> int:
    from ce4big.db import make_engine, session_scope
    from ce4big.models import utcnow
    from ce4big.users import set_user_active

    active = args.users == "activate"
    settings = _settings()
    with session_scope(make_engine(settings.database_url)) as session:
        user = set_user_active(session=session, email=args.email, active=active, now=utcnow())
        state = "active" if active else "deactivated: signed out everywhere"
        print(f"user {user.email} {state}")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from ce4big.db import make_engine, session_scope
    from ce4big.security import create_api_token, get_user_by_email

    settings = _settings()
    with session_scope(make_engine(settings.database_url)) as session:
        user = get_user_by_email(session=session, email=args.email)
        if user is None:
            raise CommandError(
                f"no user with e-mail {args.email!r}: add it with `ce4big users add`"
            )
        days = args.days or settings.api_token_days
        token = create_api_token(session=session, user=user, days=days, name=args.name or "cli")
    print(token)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from ce4big.db import make_engine, session_scope
    from ce4big.models import utcnow
    from ce4big.security import get_user_by_email, list_api_tokens

    settings = _settings()
    with session_scope(make_engine(settings.database_url)) as session:
        user = get_user_by_email(session=session, email=args.email)
        if user is None or user.id is None:
            raise CommandError(f"no user with e-mail {args.email!r}")
        now = utcnow()
        for token in list_api_tokens(session=session, user_id=user.id):
            # SQLite gives the stored UTC time back without its zone.
            expires = token.expires_at
            expires = expires if expires.tzinfo else expires.replace(tzinfo=now.tzinfo)
            state = "revoked" if token.revoked_at else "expired" if expires <= now else "active"
            used = f"{token.last_used_at:%Y-%m-%d}" if token.last_used_at else "never"
            print(
                f"{token.id}\t{state}\t{token.name or '-'}\tcreated {token.created_at:%Y-%m-%d}"
                f"\texpires {token.expires_at:%Y-%m-%d}\tlast used {used}"
            )
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from ce4big.db import make_engine, session_scope
    from ce4big.models import User, utcnow
    from ce4big.security import (
        find_api_token,
        get_user_by_email,
        revoke_api_token,
        revoke_user_api_tokens,
    )

    settings = _settings()
    now = utcnow()
    with session_scope(make_engine(settings.database_url)) as session:
        if args.user is not None:
            user = get_user_by_email(session=session, email=args.user)
            if user is None or user.id is None:
                raise CommandError(f"no user with e-mail {args.user!r}")
            count = revoke_user_api_tokens(session=session, user_id=user.id, now=now)
            print(f"{count} token{'' if count == 1 else 's'} of {user.email} revoked")
            return 0
        token = find_api_token(session=session, reference=args.token)
        if token is None or token.id is None:
            raise CommandError(
                f"token: no API token {args.token!r} (an id from `ce4big token list`, or the "
                "token itself)"
            )
        revoke_api_token(session=session, user_id=token.user_id, token_id=token.id, now=now)
        owner = session.get(User, token.user_id)
        print(f"token {token.id} of {owner.email if owner else token.user_id} revoked")
    return 0


def cmd_catalogue_import(args: argparse.Namespace) -> int:
    from ce4big.catalogue.commands import import_command

    return import_command(settings=_settings(), path=Path(args.file))


def cmd_catalogue_export(args: argparse.Namespace) -> int:
    from ce4big.catalogue.commands import export_command

    return export_command(settings=_settings(), path=Path(args.file) if args.file else None)


def cmd_report_csv(args: argparse.Namespace) -> int:
    import csv
    import io

    from ce4big.db import make_engine, session_scope
    from ce4big.domain import Role
    from ce4big.models import User
    from ce4big.reports import EXPORT_COLUMNS, export_rows

    if args.start and args.end and args.end < args.start:
        raise CommandError("--to: the period ends before it starts")
    # The operator sees what a manager sees: every exchange.
    operator = User(email="cli@localhost", role=Role.MANAGER)
    engine = make_engine(_settings().database_url)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    try:
        with session_scope(engine) as session:
            for row in export_rows(session=session, user=operator, start=args.start, end=args.end):
                writer.writerow(row)
                count += 1
    finally:
        engine.dispose()
    if args.file is None:
        sys.stdout.write(out.getvalue())
    else:
        Path(args.file).write_text(out.getvalue(), encoding="utf-8")
        print(f"{args.file}: {count} exchanges written", file=sys.stderr)
    return 0


def cmd_temporal_setup(_args: argparse.Namespace) -> int:
    from temporalio.service import RPCError

    from ce4big.searchattributes import (
        SEARCH_ATTRIBUTES,
        SearchAttributeError,
        register_search_attributes,
        type_name,
    )
    from ce4big.temporal import connect_temporal, set_retention

    settings = _settings()

    async def setup() -> tuple[list[str], bool]:
        client = await connect_temporal(settings)
        try:
            added = await register_search_attributes(client)
            return added, await set_retention(client, settings.temporal_retention_days)
        finally:
            # Dropped while the loop runs: a client left to the interpreter's exit can abort
            # the process after its work succeeded (temporalio/sdk-python#300).
            del client
            gc.collect()

    try:
        added, retention_set = asyncio.run(setup())
    except SearchAttributeError as exc:
        raise CommandError(str(exc)) from None
    except (RuntimeError, RPCError) as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CommandError(f"Temporal at {settings.temporal_target}: {first_line}") from None
    print(f"search attributes of namespace {settings.temporal_namespace!r}:")
    for key in SEARCH_ATTRIBUTES:
        done = "registered" if key.name in added else "already registered"
        print(f"  {key.name} ({type_name(key.indexed_value_type)}): {done}")
    done = "set" if retention_set else "already set"
    print(f"closed workflows kept {settings.temporal_retention_days} days: {done}")
    return 0


def cmd_gdpr_export(args: argparse.Namespace) -> int:
    from ce4big.db import make_engine, session_scope
    from ce4big.gdpr import export_person
    from ce4big.models import utcnow

    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            exported = export_person(
                session=session,
                address=args.user,
                secret=settings.secret_key.get_secret_value(),
                now=utcnow(),
                retention_days=settings.temporal_retention_days,
            )
    finally:
        engine.dispose()
    text = exported.model_dump_json(indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"--out: {args.out}: {exc.strerror}") from None
        print(f"{args.out}: what is held about {exported.address}", file=sys.stderr)
    return 0


def cmd_gdpr_erase(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from ce4big.db import make_engine
    from ce4big.gdpr import erase_person
    from ce4big.models import utcnow

    settings = _settings()
    engine = make_engine(settings.database_url)
    try:
        # One transaction: all of it is erased, or (a dry run, an error) none of it.
        with Session(engine) as session:
            erasure = erase_person(
                session=session,
                address=args.user,
                secret=settings.secret_key.get_secret_value(),
                now=utcnow(),
            )
            if args.dry_run:
                session.rollback()
            else:
                session.commit()
    finally:
        engine.dispose()
    if args.dry_run:
        print(f"dry run: erasing {erasure.address} would make it {erasure.pseudonym}:")
    elif erasure.already_erased:
        print(f"{erasure.address} was erased before; now {erasure.pseudonym}:")
    else:
        print(f"erased {erasure.address}; now {erasure.pseudonym}:")
    for what, count in erasure.changes:
        print(f"  {what}: {count}")
    if not erasure.changes:
        print("  nothing left to change")
    for note in erasure.notes:
        print(f"note: {note}")
    if erasure.workflows:
        print(
            f"Temporal: the histories of {', '.join(erasure.workflows)} keep the address until "
            f"{settings.temporal_retention_days} days after each closes (TEMPORAL_RETENTION_DAYS)"
        )
    if args.dry_run:
        print("nothing was changed (dry run)")
    return 0


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-03-31") from None


def cmd_catalogue_reindex(_args: argparse.Namespace) -> int:
    from ce4big.catalogue.commands import reindex_command

    return reindex_command(settings=_settings())


def cmd_match(args: argparse.Namespace) -> int:
    from ce4big.catalogue.commands import match_command

    return match_command(
        settings=_settings(), path=Path(args.request), top=args.top, as_json=args.json
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ce4big", description="CE4BIG Exchange")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("dev", help="run the whole stack locally").set_defaults(run=cmd_dev)
    commands.add_parser("api", help="run the web app").set_defaults(run=cmd_api)
    commands.add_parser("worker", help="run a Temporal worker").set_defaults(run=cmd_worker)

    db = commands.add_parser("db", help="database").add_subparsers(dest="db", required=True)
    db.add_parser("upgrade", help="apply migrations").set_defaults(run=cmd_db_upgrade)

    seed = commands.add_parser("seed", help="demo data").add_subparsers(dest="seed", required=True)
    seed.add_parser("demo", help="load the demo users and catalogue").set_defaults(
        run=cmd_seed_demo
    )

    users = commands.add_parser("users", help="users").add_subparsers(dest="users", required=True)
    add = users.add_parser("add", help="add or update a user")
    add.add_argument("email")
    add.add_argument("--role", required=True, help="sme, broker, manager or admin")
    add.add_argument("--cluster", help="atlanpole, biowin, biom or klsk")
    add.add_argument("--organisation", help="catalogue id of the user's organisation")
    add.add_argument("--name")
    add.add_argument("--language", help="en, fr, de or pl")
    add.set_defaults(run=cmd_users_add)
    for name, what in (
        ("deactivate", "end a user's sessions and refuse their tokens"),
        ("activate", "let a deactivated user sign in again"),
    ):
        toggle = users.add_parser(name, help=what)
        toggle.add_argument("email")
        toggle.set_defaults(run=cmd_users_active)

    token = commands.add_parser("token", help="API tokens").add_subparsers(
        dest="token", required=True
    )
    create = token.add_parser("create", help="print a new API token for a user")
    create.add_argument("email")
    create.add_argument("--days", type=_positive_int, help="validity (default API_TOKEN_DAYS)")
    create.add_argument("--name", help="a label for the token")
    create.set_defaults(run=cmd_token_create)
    listing = token.add_parser("list", help="a user's API tokens: id, state, name, dates")
    listing.add_argument("email")
    listing.set_defaults(run=cmd_token_list)
    revoke = token.add_parser("revoke", help="revoke an API token, or every token of a user")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "token", nargs="?", help="a token id from `ce4big token list`, or the token itself"
    )
    which.add_argument("--user", metavar="EMAIL", help="revoke every token of this user")
    revoke.set_defaults(run=cmd_token_revoke)

    catalogue = commands.add_parser("catalogue", help="skills catalogue").add_subparsers(
        dest="catalogue", required=True
    )
    imp = catalogue.add_parser("import", help="upsert organisations from a CSV file")
    imp.add_argument("file")
    imp.set_defaults(run=cmd_catalogue_import)
    exp = catalogue.add_parser("export", help="write the catalogue as CSV (stdout by default)")
    exp.add_argument("file", nargs="?")
    exp.set_defaults(run=cmd_catalogue_export)
    catalogue.add_parser(
        "reindex", help="profile again entries read with an older vocabulary"
    ).set_defaults(run=cmd_catalogue_reindex)

    report = commands.add_parser("report", help="programme reports").add_subparsers(
        dest="report", required=True
    )
    report_csv = report.add_parser("csv", help="one row per exchange (stdout by default)")
    report_csv.add_argument("--from", dest="start", type=_iso_date, help="submitted on or after")
    report_csv.add_argument("--to", dest="end", type=_iso_date, help="submitted on or before")
    report_csv.add_argument("file", nargs="?")
    report_csv.set_defaults(run=cmd_report_csv)

    temporal = commands.add_parser("temporal", help="the Temporal cluster").add_subparsers(
        dest="temporal", required=True
    )
    temporal.add_parser(
        "setup", help="register the exchange's search attributes in the namespace"
    ).set_defaults(run=cmd_temporal_setup)

    gdpr = commands.add_parser("gdpr", help="personal data of one person").add_subparsers(
        dest="gdpr", required=True
    )
    gdpr_export = gdpr.add_parser("export", help="everything held about an address, as JSON")
    gdpr_export.add_argument("--user", required=True, metavar="EMAIL", help="the address")
    gdpr_export.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    gdpr_export.set_defaults(run=cmd_gdpr_export)
    gdpr_erase = gdpr.add_parser("erase", help="pseudonymise an address, keeping the figures")
    gdpr_erase.add_argument("--user", required=True, metavar="EMAIL", help="the address")
    gdpr_erase.add_argument("--dry-run", action="store_true", help="say what would change")
    gdpr_erase.set_defaults(run=cmd_gdpr_erase)

    match = commands.add_parser("match", help="rank catalogue partners for a request")
    match.add_argument("--request", required=True, help="a JSON request (one requests line)")
    match.add_argument("--top", type=_positive_int, default=10, help="how many (default 10)")
    match.add_argument("--json", action="store_true", help="print a JSON array")
    match.set_defaults(run=cmd_match)

    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        code = run(args)
    except (CommandError, AppError) as exc:
        print(f"ce4big: error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
