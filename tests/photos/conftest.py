from typing import Any

import httpx

API = "/api/v1"


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    *,
    name: str = "photo.jpg",
    content_type: str = "image/jpeg",
    **params: Any,
) -> httpx.Response:
    return await client.post(
        f"{API}/photos",
        headers=headers,
        files={"file": (name, data, content_type)},
        params=params,
    )
