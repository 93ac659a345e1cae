"""The CRM way in: Standard-Webhooks-verified order events, mapped per source, applied once."""

from loopline.ingest.crm.mappings import MAPPINGS, MappingError, UnknownSource, get_mapping
from loopline.ingest.crm.receive import (
    BadBody,
    BadSignature,
    Receipt,
    ReceiveError,
    TooLarge,
    UnsupportedMediaType,
    receive,
)

__all__ = [
    "MAPPINGS",
    "BadBody",
    "BadSignature",
    "MappingError",
    "Receipt",
    "ReceiveError",
    "TooLarge",
    "UnknownSource",
    "UnsupportedMediaType",
    "get_mapping",
    "receive",
]
