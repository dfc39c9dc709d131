from typing import Any

import pytest
from pydantic import ValidationError

from ce4big.settings import Settings


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


class TestSettings:
    def test_development_defaults_use_embedded_services(self) -> None:
        config = settings()
        assert config.database_url == "sqlite:///.data/app.db"
        assert config.embedded_temporal and config.temporal_target == "127.0.0.1:7233"
        assert config.embedded_smtp and config.smtp_target == ("127.0.0.1", 1025)
        assert config.ce4big_port == 8000

    @pytest.mark.parametrize("secret", ["change-me", "", "secret"])
    def test_placeholder_secret_refused_outside_development(self, secret: str) -> None:
        with pytest.raises(ValidationError, match="SECRET_KEY"):
            settings(ce4big_env="production", secret_key=secret)

    def test_real_secret_accepted_in_production(self) -> None:
        config = settings(ce4big_env="production", secret_key="x" * 40)
        assert not config.is_development

    @pytest.mark.parametrize("url", ["example.org", "ftp://example.org", "http://"])
    def test_base_url_must_be_absolute_http(self, url: str) -> None:
        with pytest.raises(ValidationError, match="BASE_URL"):
            settings(base_url=url)

    def test_base_url_loses_trailing_slash(self) -> None:
        assert settings(base_url="https://exchange.ce4big.eu/").base_url == (
            "https://exchange.ce4big.eu"
        )

    def test_time_scale_divides_durations(self) -> None:
        assert settings(ce4big_time_scale=1440).scaled_seconds(86400) == 60

    @pytest.mark.parametrize("scale", [0, -1])
    def test_time_scale_must_be_positive(self, scale: float) -> None:
        with pytest.raises(ValidationError):
            settings(ce4big_time_scale=scale)

    def test_tls_and_starttls_are_exclusive(self) -> None:
        with pytest.raises(ValidationError, match="exclusive"):
            settings(smtp_tls=True, smtp_starttls=True)

    def test_empty_smtp_host_means_embedded_sink(self) -> None:
        assert settings(smtp_host="").embedded_smtp

    def test_environment_variables_are_read(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.internal:7233")
        monkeypatch.setenv("CE4BIG_PORT", "9000")
        config = settings()
        assert config.temporal_target == "temporal.internal:7233"
        assert not config.embedded_temporal
        assert config.ce4big_port == 9000
