"""Reading a WhatsApp Business Account's templates from the Graph API (reference meta-2026 §2.1).

`GET {base}/{version}/{waba_id}/message_templates?fields=...&limit=N` answers `data[]` and
`paging.cursors.after` / `paging.next`; every page is read by following `next` until it is
absent (at most MAX_PAGES pages, so a misbehaving server cannot loop us forever). A page without
`next` but with an `after` cursor and a full `data[]` is followed by cursor, as some Graph
versions page that way. Any failure raises :class:`TemplateCatalogError` with a message safe to
show (never the token).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

FIELDS = "id,name,language,status,category,parameter_format,quality_score,components"
LIMIT_FIELD = "whatsapp_business_manager_messaging_limit"
PAGE_SIZE = 100
MAX_PAGES = 500


class TemplateCatalogError(Exception):
    """The templates could not be read (the message names why; it holds no secret)."""


class TemplateCatalog(Protocol):
    """Where SyncTemplates reads an account's templates (and its portfolio's messaging limit)
    from."""

    async def list_templates(self, waba_id: str) -> list[Mapping[str, Any]]:
        """Every template translation of the account, across all pages."""
        ...

    async def messaging_limit(self, phone_number_id: str) -> object:
        """The phone number's portfolio messaging limit as Meta writes it (``TIER_2K``)."""
        ...


class MetaTemplateCatalog:
    """The Graph API's `message_templates` edge."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        api_version: str,
        access_token: str,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._client = client
        self._base = f"{base_url.rstrip('/')}/{api_version}"
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._page_size = page_size

    async def list_templates(self, waba_id: str) -> list[Mapping[str, Any]]:
        """Every template translation of `waba_id`, following `paging.next`."""
        url: str | None = f"{self._base}/{waba_id}/message_templates"
        params: dict[str, str] | None = {"fields": FIELDS, "limit": str(self._page_size)}
        items: list[Mapping[str, Any]] = []
        for _ in range(MAX_PAGES):
            if url is None:
                return items
            page = await self._page(url, params)
            data = page.get("data")
            if not isinstance(data, list):
                raise TemplateCatalogError("the template list answer has no data[]")
            items.extend(item for item in data if isinstance(item, Mapping))
            url, params = self._next(page, url, params, len(data))
        raise TemplateCatalogError(f"the template list did not end after {MAX_PAGES} pages")

    async def messaging_limit(self, phone_number_id: str) -> object:
        """`GET /{phone_number_id}?fields=whatsapp_business_manager_messaging_limit` (reference
        meta-2026 §5.1; `messaging_limit_tier` is deprecated)."""
        body = await self._page(
            f"{self._base}/{phone_number_id}", {"fields": LIMIT_FIELD}, "the phone number"
        )
        if LIMIT_FIELD not in body:
            raise TemplateCatalogError(f"the phone number answer has no {LIMIT_FIELD}")
        return body[LIMIT_FIELD]

    def _next(
        self, page: Mapping[str, Any], url: str, params: dict[str, str] | None, count: int
    ) -> tuple[str | None, dict[str, str] | None]:
        paging = page.get("paging")
        paging = paging if isinstance(paging, Mapping) else {}
        next_url = paging.get("next")
        if isinstance(next_url, str) and next_url:
            return next_url, None  # the full URL already carries fields, limit and after
        cursors = paging.get("cursors")
        after = cursors.get("after") if isinstance(cursors, Mapping) else None
        if isinstance(after, str) and after and count >= self._page_size and params is not None:
            return url, {**params, "after": after}
        return None, None

    async def _page(
        self, url: str, params: dict[str, str] | None, what: str = "the template list"
    ) -> Mapping[str, Any]:
        try:
            response = await self._client.get(url, params=params, headers=self._headers)
        except httpx.TransportError as error:
            raise TemplateCatalogError(
                f"could not read {what} from Meta: {type(error).__name__}"
            ) from None
        try:
            body = json.loads(response.content)
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, Mapping):
            graph_error = body.get("error") if isinstance(body, Mapping) else None
            detail = graph_error.get("message") if isinstance(graph_error, Mapping) else None
            raise TemplateCatalogError(
                f"Meta answered HTTP {response.status_code} to {what}"
                + (f": {detail}" if isinstance(detail, str) else "")
            )
        return body
