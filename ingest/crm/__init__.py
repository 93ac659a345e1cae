"""The CRM way in: connector files (ingest/crm/connectors/) say how each CRM's webhooks are
authenticated and mapped to the canonical order event; accepted events are applied once."""

from loopline.ingest.crm.auth import BadSignature, Incoming
from loopline.ingest.crm.connector import (
    Connector,
    ConnectorFileError,
    MappingError,
    Registry,
    UnknownSource,
    default_registry,
    load_file,
)
from loopline.ingest.crm.receive import (
    BadBody,
    Delivery,
    FetchFailed,
    Receipt,
    ReceiveError,
    TooLarge,
    UnsupportedMediaType,
    map_record,
    receive,
    receive_all,
)

__all__ = [
    "BadBody",
    "BadSignature",
    "Connector",
    "ConnectorFileError",
    "Delivery",
    "FetchFailed",
    "Incoming",
    "MappingError",
    "Receipt",
    "ReceiveError",
    "Registry",
    "TooLarge",
    "UnknownSource",
    "UnsupportedMediaType",
    "default_registry",
    "load_file",
    "map_record",
    "receive",
    "receive_all",
]
