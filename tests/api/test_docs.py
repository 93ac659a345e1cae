"""The API docs work with no internet: every asset they load is served by this server."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx
import pytest

# src/href attributes, Swagger UI's spec url and Redoc's spec-url.
REFERENCES = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_reference_only_local_urls_that_answer(api_stack, page):
    response = httpx.get(api_stack.url + page)
    assert response.status_code == 200
    html = response.text
    assert "cdn." not in html and "https://" not in html and "http://" not in html
    refs = [a or b for a, b in REFERENCES.findall(html)]
    assert any(r.endswith(".js") for r in refs), refs
    assert any(r.endswith("openapi.json") for r in refs), refs
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        asset = httpx.get(urljoin(api_stack.url, ref))
        assert asset.status_code == 200, ref
        assert len(asset.content) > 0, ref
