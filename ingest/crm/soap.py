"""SOAP bodies (Salesforce Outbound Messages) as plain dicts, and the SOAP Ack answer."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"

ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body>"
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<Ack>{ack}</Ack>"
    "</notificationsResponse>"
    "</soapenv:Body>"
    "</soapenv:Envelope>"
)


def ack(ok: bool = True) -> str:
    """The answer Salesforce waits for; ``false`` makes it retry the message later."""
    return ACK.format(ack="true" if ok else "false")


def parse(body: bytes) -> dict[str, Any]:
    """XML -> ``{"Envelope": {"Body": ...}}``: namespaces dropped, repeated elements as
    lists, ``xsi:nil`` as None, leaf text as strings. Raises ValueError on bad XML (entities
    and DTDs are refused: defusedxml)."""
    try:
        root = ElementTree.fromstring(body)
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise ValueError(f"invalid XML: {exc}") from None
    return {_local(root.tag): _value(root)}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _value(element: Element) -> Any:
    if element.get(XSI_NIL) == "true":
        return None
    children = list(element)
    if not children:
        return (element.text or "").strip()
    out: dict[str, Any] = {}
    listed: set[str] = set()
    for child in children:
        key, value = _local(child.tag), _value(child)
        if key not in out:
            out[key] = value
            continue
        if key not in listed:  # a second one of a name: that name holds a list
            out[key], listed = [out[key]], listed | {key}
        out[key].append(value)
    return out
