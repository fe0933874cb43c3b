"""Account and tracker ids (app/ids.py): one spelling each, and a 404 for any other."""
from __future__ import annotations

import pytest

from app.ids import canonical_id
from tests.helpers import EVENT


@pytest.mark.parametrize(("aid", "tid", "account_id", "tracker_id"), [
    ("42", "7", "42", "7"),
    ("007", "0010", "7", "10"),
    ("3F2504E0-4F89-11D3-9A0C-0305E82C3301", "1", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "1"),
])
def test_ids_are_stored_in_one_spelling(client, sent, aid, tid, account_id, tracker_id):
    assert client.post(f"/collect/{aid}/{tid}/event", json=EVENT).status_code == 204
    [record] = sent()
    assert record["topic"] == f"events.{account_id}"
    assert (record["value"]["account_id"], record["value"]["tracker_id"]) == (account_id, tracker_id)


BAD_PATHS = [
    ("/collect/abc/1/event", "aid"), ("/collect/1/abc/event", "tid"), ("/collect/0/1/event", "aid"),
    ("/collect/-1/1/event", "aid"), ("/collect/1.5/1/event", "aid"), ("/collect/%D9%A1%D9%A2/1/event", "aid"),
    ("/collect/1/3f2504e04f8911d39a0c0305e82c3301/event", "tid"), ("/collect/123456789012345678901/1/event", "aid"),
    ("/collect/1%0A/1/event", "aid"), ("/collect/..%2F1/1/event", None), ("/collect/1/1/eventz", None),
]


@pytest.mark.parametrize(("path", "field"), BAD_PATHS)
def test_malformed_ids_are_404(client, sent, path, field):
    response = client.post(path, json=EVENT)
    assert response.status_code == 404
    body = response.get_json()
    assert body["code"] == 404
    if field:
        assert body["errors"] == {field: ["must be a positive decimal number or a UUID"]}
        assert body["message"] == f"no such collect path: {field} must be a positive decimal number or a UUID"
    assert sent() == []


UUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


@pytest.mark.parametrize(("value", "canonical"), [
    ("1", "1"), ("42", "42"), ("007", "7"), ("0" * 20 + "1", "1"), ("9" * 20, "9" * 20),
    (UUID, UUID), (UUID.upper(), UUID),
    ("0", None), ("000", None), ("-1", None), ("+1", None), ("1.5", None), ("1e3", None), ("0x1", None),
    ("1" + "0" * 20, None), ("0" * 21 + "1", None), (" 1", None), ("1\n", None), ("", None),
    ("\u0661\u0662", None), ("\uff11", None),  # Arabic-Indic and fullwidth digits
    (UUID.replace("-", ""), None), ("{" + UUID + "}", None), (UUID[:-1] + "g", None), (UUID + "0", None),
])
def test_an_id_has_one_spelling_or_none(value, canonical):
    assert canonical_id(value) == canonical
