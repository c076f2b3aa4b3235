"""JSON log lines (spec 8.1) and masking (spec 8.2)."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys

import pytest

from observability.logging import JsonFormatter
from observability.masking import is_secret_key, mask, mask_text


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("postgresql://app:s3cret@db:5432/x", "postgresql://app:***@db:5432/x"),
        ("key sk-abcDEF123456 used", "key sk-*** used"),
        ("Authorization: bearer abc.def-ghi", "Authorization: Bearer ***"),
        ("password=hunter2 next", "password=*** next"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.sig-_x", "token jwt.***"),
        ("mail taro.yamada@example.co.jp now", "mail ***@example.co.jp now"),
        ("card 4111 1111-1111 1111 end", "card ****-****-****-**** end"),
        ("AKIAABCDEFGHIJKLMNOP", "AKIA***"),
        ("secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY here", "secret *** here"),
    ],
)
def test_text_patterns_are_masked(raw: str, masked: str) -> None:
    assert mask_text(raw) == masked


def test_ids_and_token_counts_are_not_masked() -> None:
    hex_id = "0123456789abcdef0123456789abcdef01234567"
    record = {"workflowRunId": hex_id, "tokensUsed": {"input": 5}, "inputTokens": 3, "maxTokens": 2000}
    assert mask(record) == record


@pytest.mark.parametrize(
    "uuid_text",
    [
        "49906431-0073-4447-b353-0c1f5e2a9d10",
        "12345678-1234-1234-1234-123456789012",
        "ai-gen-49906431-0073-4447-8353-000000000001",
        "processId=49906431-0073-4447-b353-0c1f5e2a9d10 done",
    ],
)
def test_uuids_whose_groups_are_digits_are_not_card_numbers(uuid_text: str) -> None:
    assert mask_text(uuid_text) == uuid_text
    assert mask({"processId": uuid_text}) == {"processId": uuid_text}


@pytest.mark.parametrize("card", ["4111111111111111", "4111-1111-1111-1111", "(4111 1111 1111 1111)"])
def test_card_numbers_alone_or_in_punctuation_are_masked(card: str) -> None:
    assert "4111" not in mask_text(f"paid with {card}.")


def test_secret_keys_are_masked_in_nested_objects_and_lists() -> None:
    record = {"outer": [{"api_key": "abc", "Client-Secret": "x", "dbPassword": "p"}, {"authorization": "t"}]}
    assert mask(record) == {
        "outer": [{"api_key": "***", "Client-Secret": "***", "dbPassword": "***"}, {"authorization": "***"}]
    }
    assert is_secret_key("set-cookie") and is_secret_key("refresh_token") and not is_secret_key("tokensUsed")


def test_each_record_is_one_json_line_with_the_spec_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "db.repository",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "state transition",
            "event": "state_transition",
            "processId": "p-1",
            "fromStatus": "PENDING",
            "cause": "connect to postgresql://u:pw@h/db failed",
        }
    )
    line = JsonFormatter("worker").format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "WARN" and data["service"] == "worker" and data["event"] == "state_transition"
    assert data["logger"] == "db.repository" and data["message"] == "state transition"
    assert (data["pid"], data["host"]) == (os.getpid(), socket.gethostname())
    assert data["timestamp"].endswith("Z") and len(data["timestamp"]) == len("2026-03-01T09:30:00.000Z")
    assert data["processId"] == "p-1" and data["fromStatus"] == "PENDING"
    assert data["cause"] == "connect to postgresql://u:***@h/db failed"


def test_stack_traces_only_in_error_records() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        info = sys.exc_info()
    for level, expected in ((logging.ERROR, True), (logging.WARNING, False)):
        record = logging.makeLogRecord(
            {"levelno": level, "levelname": logging.getLevelName(level), "msg": "m", "exc_info": info}
        )
        assert ("stack" in json.loads(JsonFormatter("api").format(record))) is expected
