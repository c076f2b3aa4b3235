"""The client's connection settings, language and arguments (no servers)."""

from __future__ import annotations

import pytest

from cli.client.config import DEFAULT_API_URL, ConfigError, connection, user_language
from cli.main import main
from domain.enums import Language


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LANG": "ja_JP.UTF-8"}, Language.JA),
        ({"LANG": "en_US.UTF-8"}, Language.EN),
        ({"LC_ALL": "ja_JP.UTF-8", "LANG": "en_US.UTF-8"}, Language.JA),
        ({"LC_MESSAGES": "C.UTF-8", "LANG": "ja_JP.UTF-8"}, Language.EN),
        ({}, Language.EN),
    ],
)
def test_the_locale_picks_the_language(environ: dict[str, str], expected: Language) -> None:
    assert user_language(environ) is expected


def test_flags_win_over_the_environment_and_a_bearer_prefix_is_accepted() -> None:
    environ = {"MANDALA_API_URL": "http://env:1/", "MANDALA_TOKEN": "from-env"}
    assert connection(None, None, environ).api_url == "http://env:1"
    assert connection("https://flag:2", "Bearer abc", environ).token == "abc"
    assert connection(None, None, {"MANDALA_TOKEN": "t"}).api_url == DEFAULT_API_URL


@pytest.mark.parametrize(("url", "token"), [("ftp://x", "t"), (None, ""), (None, "  ")])
def test_no_token_or_a_bad_url_is_refused(url: str | None, token: str) -> None:
    with pytest.raises(ConfigError):
        connection(url, token, {})


@pytest.mark.parametrize("deadline", ["2030-13-01", "2030-12-31T10:00:00", "tomorrow"])
def test_a_deadline_without_an_offset_or_not_a_date_is_a_usage_error(
    deadline: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["generate", "subgoals", "--title", "t", "--description", "d", "--background", "b"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--deadline", deadline])
    assert exit_info.value.code == 2
    assert "expected a date or a date-time with an offset" in capsys.readouterr().err
