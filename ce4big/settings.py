"""Settings, read from the environment and `.env`. Imports no FastAPI: the worker uses it too."""

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "dev-secret-key"})

SQLITE_DEFAULT = "sqlite:///.data/app.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    ce4big_env: Literal["development", "test", "production"] = "development"
    database_url: str = SQLITE_DEFAULT
    # A request holds a connection only while its SQL runs (never across a Temporal call), so
    # size + overflow matches the thread pool (40) that runs that SQL; a request that still
    # finds the pool empty waits this long, then gets 503 with Retry-After.
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(30, ge=0)
    db_pool_timeout_seconds: float = Field(5.0, gt=0)

    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_task_queue: str = "ce4big-exchange"
    temporal_dev_port: int = Field(7233, ge=1, le=65535)
    temporal_ui_port: int = Field(8233, ge=1, le=65535)
    # How long Temporal keeps a closed workflow's history (and the addresses and notes in its
    # inputs): the dev stack and `ce4big temporal setup` set it on the namespace.
    temporal_retention_days: int = Field(30, ge=1, le=3650)
    # An external Temporal cluster over TLS: a client certificate and key for mTLS (a file's
    # path, or the PEM text itself), the server's CA when it is private, or an API key
    # (Temporal Cloud). Either one turns TLS on.
    temporal_tls_cert: str | None = None
    temporal_tls_key: SecretStr | None = None
    temporal_tls_ca: str | None = None
    temporal_api_key: SecretStr | None = None

    smtp_host: str | None = None
    smtp_port: int = Field(1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: bool = False
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(30.0, gt=0)
    mail_from: str = "CE4BIG Exchange <exchange@ce4big.example>"

    base_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr = SecretStr("change-me")
    ce4big_host: str = "127.0.0.1"
    ce4big_port: int = Field(8000, ge=1, le=65535)
    ce4big_time_scale: float = Field(1.0, gt=0)
    data_dir: Path = Path(".data")

    api_token_days: int = Field(90, ge=1)
    # Web sign-in: an e-mailed link, then a server-side session behind a random cookie.
    sign_in_link_minutes: int = Field(15, ge=1)
    session_idle_minutes: int = Field(120, ge=1)
    session_absolute_hours: int = Field(12, ge=1)
    sign_in_per_address: int = Field(5, ge=1)
    sign_in_per_client: int = Field(20, ge=1)
    sign_in_window_minutes: int = Field(15, ge=1)
    # How long a web request waits on Temporal (an exchange's start, a decision, the live
    # state) before it answers 503: a decision waits for a worker to run the workflow's code.
    temporal_timeout_seconds: float = Field(10.0, gt=0)
    # Decisions and e-mail link actions per client address in a fixed window, counted in each
    # web process's memory; more get 429 with Retry-After.
    decisions_per_client: int = Field(60, ge=1)
    link_actions_per_client: int = Field(30, ge=1)
    rate_limit_window_seconds: int = Field(60, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    catalogue_max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    fairness_open_introductions: int = Field(3, ge=1)
    fairness_decline_days: int = Field(180, ge=0)

    # Processes: `ce4big api` serves its port from this many processes (uvicorn's own, one
    # socket); `ce4big dev` runs one `ce4big api` and this many `ce4big worker`.
    web_processes: int = Field(1, ge=1, le=64)
    worker_processes: int = Field(1, ge=1, le=64)
    # Each worker process. An activity holds at most one database connection (its thread's),
    # so as many run at once as the pool holds (DB_POOL_SIZE + DB_MAX_OVERFLOW). Workflow tasks
    # are Python under one interpreter lock: more than a few at once only make each longer (at
    # the SDK's 100, a burst's tasks ran past 5 s and their replays doubled the CPU). The cache
    # holds the open exchanges a worker keeps in memory, about 170 KB each: 4,000 of them stay
    # within 1 GB; one that left it is replayed at its next task. The pollers are the SDK's
    # defaults; the SDK needs two or more pollers and workflow tasks with a cache.
    worker_max_concurrent_activities: int = Field(40, ge=1)
    worker_max_concurrent_workflow_tasks: int = Field(8, ge=2)
    worker_max_cached_workflows: int = Field(4000, ge=0)
    worker_workflow_task_pollers: int = Field(5, ge=2)
    worker_activity_task_pollers: int = Field(5, ge=1)
    # The SDK's sandbox checks at run time that workflow code stays deterministic; the workflow
    # tests' own workers and the replay test keep it whatever this says. Off, a complete exchange
    # costs about an eighth less CPU and a cached one two fifths less of the worker's memory.
    worker_workflow_sandbox: bool = True

    # Lifecycle timing, in days unless named otherwise; every one is divided by the time scale
    # and snapshotted into each exchange's workflow when it starts.
    vetting_reminder_days: float = Field(2, gt=0)
    vetting_escalation_days: float = Field(5, gt=0)
    changes_reminder_days: float = Field(7, gt=0)
    changes_expiry_days: float = Field(21, gt=0)
    shortlist_reminder_days: float = Field(2, gt=0)
    shortlist_escalation_days: float = Field(5, gt=0)
    host_review_consent_days: float = Field(3, gt=0)
    partner_reminder_days: float = Field(3, gt=0)
    partner_deadline_days: float = Field(7, gt=0)
    scheduling_reminder_days: float = Field(4, gt=0)
    scheduling_deadline_days: float = Field(10, gt=0)
    meeting_reminder_hours: float = Field(24, gt=0)
    survey_delay_days: float = Field(7, gt=0)
    survey_reminder_days: float = Field(5, gt=0)
    survey_close_days: float = Field(14, gt=0)
    outcome_wave_days: float = Field(180, ge=0)
    outcome_wave_close_days: float = Field(30, gt=0)
    action_token_days: float = Field(30, gt=0)
    slot_horizon_days: int = Field(365, ge=1)

    @field_validator("base_url")
    @classmethod
    def _absolute_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("BASE_URL must be an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator(
        "temporal_address",
        "smtp_host",
        "temporal_tls_cert",
        "temporal_tls_key",
        "temporal_tls_ca",
        "temporal_api_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _no_placeholder_secret_outside_development(self) -> "Settings":
        if (
            self.ce4big_env != "development"
            and self.secret_key.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS
        ):
            raise ValueError("SECRET_KEY is a placeholder: set a random value outside development")
        if self.smtp_tls and self.smtp_starttls:
            raise ValueError("SMTP_TLS and SMTP_STARTTLS are exclusive: choose one")
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together: set both")
        return self

    @property
    def is_development(self) -> bool:
        return self.ce4big_env == "development"

    @property
    def embedded_temporal(self) -> bool:
        return self.temporal_address is None

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_dev_port}"

    @property
    def embedded_smtp(self) -> bool:
        return self.smtp_host is None

    @property
    def smtp_target(self) -> tuple[str, int]:
        return (self.smtp_host or "127.0.0.1", self.smtp_port)

    def scaled_seconds(self, seconds: float) -> float:
        return seconds / self.ce4big_time_scale


@lru_cache
def get_settings() -> Settings:
    return Settings()
