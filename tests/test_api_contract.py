"""The API answers what its OpenAPI document says, on the live API: every operation behind the
API key answers 401 without it and documents that 401 with the error body really sent; OPTIONS
says which methods a path takes, and a method it does not take is a 405 naming them all.
(The fuzz test, tests/test_api_fuzz.py, checks every status and content type it meets.)"""

from __future__ import annotations

import re

from tests.conftest import LiveStack

ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}


def filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def test_every_operation_behind_the_key_answers_and_documents_401(live: LiveStack):
    spec = (await live.public.get("/openapi.json")).json()
    protected = [
        (method, path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if op.get("security")
    ]
    assert len(protected) >= 20, [
        f"{m} {p}" for m, p, _ in protected
    ]  # the management API, not the public links
    for method, path, op in protected:
        response = await live.public.request(method.upper(), filled(path))
        assert response.status_code == 401, (method, path, response.status_code, response.text)
        assert isinstance(response.json()["detail"], str)
        assert op["responses"]["401"]["content"]["application/json"]["schema"] == ERROR_BODY, (
            method,
            path,
        )
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["detail"]


async def test_errors_of_html_pages_are_documented_as_pages_and_json_errors_as_json(
    live: LiveStack,
):
    spec = (await live.public.get("/openapi.json")).json()
    unsubscribe = spec["paths"]["/u/{token}"]["post"]["responses"]
    assert set(unsubscribe["404"]["content"]) == {"text/html"}  # the "link not valid" page
    assert set(unsubscribe["503"]["content"]) == {
        "application/json"
    }  # a read-only database: JSON, as every error
    assert (
        (await live.public.post("/u/not-a-token")).headers["content-type"].startswith("text/html")
    )
    journey = spec["paths"]["/leads/{lead_id}/journeys/{journey}"]["get"]["responses"]
    assert {"401", "404", "413", "422", "500", "503"} <= set(journey)
    assert "400" in spec["paths"]["/leads"]["post"]["responses"]  # a body that is not UTF-8
    response = await live.http.post(
        "/leads", content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and isinstance(response.json()["detail"], str)


async def test_options_lists_every_method_of_the_path_and_a_405_names_them(live: LiveStack):
    # /u/{token} is three routes (GET, HEAD, POST): Starlette named only the first one's method.
    options = await live.public.options("/u/some-token")
    assert options.status_code == 204 and options.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    put = await live.public.put("/u/some-token")
    assert put.status_code == 405 and put.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert "GET, HEAD, POST, OPTIONS" in put.json()["detail"]
    assert (await live.public.options("/t/c/some-token")).headers["allow"] == "GET, HEAD, OPTIONS"
    # A path is the resource it names first: POST /events/track, not also GET /events/{event_id}.
    assert (await live.public.options("/events/track")).headers["allow"] == "POST, OPTIONS"
    assert (await live.public.options("/leads/some-id")).headers["allow"] == "GET, DELETE, OPTIONS"
    # The codec's own CORS preflight still answers it (the Temporal UI relies on it).
    assert (await live.public.options("/codec/decode")).status_code == 204


async def test_the_docs_list_every_section_leads_first_whatever_order_the_routes_match_in(
    live: LiveStack,
):
    """The routes match tracking first (most of the traffic); the docs' sections keep the order
    a newcomer reads them in, and a router with a section of its own appears in that list."""
    spec = (await live.public.get("/openapi.json")).json()
    used = {tag for ops in spec["paths"].values() for op in ops.values() for tag in op["tags"]}
    listed = [tag["name"] for tag in spec["tags"]]
    assert listed[0] == "leads" and set(listed) == used, (listed, used)
