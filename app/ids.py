"""Account and tracker ids, as the collect path holds them: a positive decimal number or a UUID."""
from __future__ import annotations

import re

ID_MESSAGE = "must be a positive decimal number or a UUID"
ID_PATTERN = r"0{0,20}[1-9][0-9]{0,19}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

_ID = re.compile(ID_PATTERN)


def canonical_id(value: str) -> str | None:
    """An account or tracker id in its one spelling (UUIDs lower-case, numbers unpadded), or
    None when it is neither a positive decimal number nor a UUID; one account is one topic."""
    if not _ID.fullmatch(value):
        return None
    return value.lower() if "-" in value else str(int(value))
