"""Bad input from outside gets a clear JSON 4xx and writes nothing; concurrent requests end as a
single request would; no answer is built from the request's Host; an unexpected error is a JSON 500.

The cases come from trying the API as a stranger would: nulls where lists are kept, dates in year
9999, NaN and Infinity, booleans where a campaign knob wants a number, 200 MB bodies, 20 MB
echoed back, fifty sign-ups of one address at once, CR/LF in names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from api import crud
from api.main import create_app
from api.schemas import CartIn, LeadCreate
from relance.dev.seeding import unique_id
from relance.domain.db import make_engine
from relance.domain.models import Cart, Event, Lead
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import sign_up_body
from tests.test_postgres import postgres_url  # noqa: F401 (the fixture: a throwaway PostgreSQL)


def email() -> str:
    return f"bounds-{uuid.uuid4().hex[:10]}@example.com"


def rows(live: LiveStack, model) -> int:
    with Session(live.engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def event_body(**extra) -> dict:
    return {
        "name": "Bounds webinar",
        "starts_at": (datetime.now(UTC) + timedelta(days=20)).isoformat(),
        "join_url": "https://example.com/live",
        **extra,
    }


def assert_validation_error(response: httpx.Response, *loc_start) -> list[dict]:
    """A 422 as OpenAPI documents it (HTTPValidationError): ``detail`` is a list of {loc, msg,
    type}."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    assert all(
        isinstance(d["msg"], str) and d["msg"] and isinstance(d["loc"], list) and d["type"]
        for d in detail
    )
    if loc_start:
        assert any(tuple(d["loc"][: len(loc_start)]) == loc_start for d in detail), detail
    return detail


# Events: nulls in lists, dates out of range ----------------------------------------------------
@pytest.mark.parametrize("field", ["topics", "speakers"])
async def test_a_null_list_in_an_event_patch_clears_it_and_the_event_stays_readable(
    live: LiveStack, field: str
):
    event = (
        await live.http.post("/events", json=event_body(topics=["ai"], speakers=["Ada"]))
    ).json()
    response = await live.http.patch(f"/events/{event['id']}", json={field: None})
    assert response.status_code == 200, response.text
    assert response.json()[field] == []
    again = await live.http.get(f"/events/{event['id']}")
    assert again.status_code == 200 and again.json()[field] == []
    other = "speakers" if field == "topics" else "topics"
    assert again.json()[other] == event[other]  # only what was sent changes


async def test_an_event_stored_with_null_lists_by_an_earlier_version_reads_as_empty(
    live: LiveStack,
):
    """Before null meant "clear", a PATCH stored the JSON null itself, and every GET then failed."""
    with Session(live.engine, expire_on_commit=False) as session:
        event = Event(
            name="Old webinar",
            starts_at=datetime.now(UTC) + timedelta(days=3),
            join_url="https://example.com/live",
            speakers=None,
            topics=None,
        )
        session.add(event)
        session.commit()
    response = await live.http.get(f"/events/{event.id}")
    assert response.status_code == 200, response.text
    assert response.json()["speakers"] == [] and response.json()["topics"] == []


@pytest.mark.parametrize("field", ["name", "starts_at", "time_zone", "duration_minutes", "status"])
async def test_a_null_for_a_required_event_field_is_a_documented_422(live: LiveStack, field: str):
    event = (await live.http.post("/events", json=event_body())).json()
    response = await live.http.patch(f"/events/{event['id']}", json={field: None})
    assert_validation_error(response, "body", field)
    assert (await live.http.get(f"/events/{event['id']}")).json() == event


@pytest.mark.parametrize(
    "starts_at",
    [
        "9999-12-31T23:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "1899-06-01T10:00:00Z",
        "2200-01-01T00:00:00Z",
    ],
)
async def test_an_event_date_out_of_range_is_422_and_stores_nothing(
    live: LiveStack, starts_at: str
):
    before = rows(live, Event)
    response = await live.http.post("/events", json=event_body(starts_at=starts_at))
    detail = assert_validation_error(response, "body", "starts_at")
    assert "2000" in detail[0]["msg"] and "2100" in detail[0]["msg"]
    assert rows(live, Event) == before

    event = (await live.http.post("/events", json=event_body())).json()
    moved = await live.http.patch(f"/events/{event['id']}", json={"starts_at": starts_at})
    assert_validation_error(moved, "body", "starts_at")
    assert (await live.http.get(f"/events/{event['id']}")).json() == event


async def test_the_date_range_is_in_the_openapi_schema(live: LiveStack):
    schemas = (await live.public.get("/openapi.json")).json()["components"]["schemas"]
    for name in ("EventCreate", "EventUpdate"):
        description = json.dumps(schemas[name]["properties"]["starts_at"])
        assert "2000-01-01" in description and "2100-01-01" in description


async def test_string_422s_are_lists_as_documented(live: LiveStack):
    """The 422s the code raises itself have the documented shape too."""
    event = (await live.http.post("/events", json=event_body())).json()
    gone = await live.http.patch(f"/events/{event['id']}", json={"join_url": None})
    assert_validation_error(gone)
    assert (
        await live.http.patch(f"/events/{event['id']}", json={"status": "cancelled"})
    ).status_code == 200
    assert_validation_error(await live.http.patch(f"/events/{event['id']}", json={"name": "Again"}))
    malformed = await live.http.post(
        "/leads/import", files={"file": ("x.csv", b"first_name\nAna\n", "text/csv")}
    )
    assert "nothing was imported" in assert_validation_error(malformed)[0]["msg"]
    documented = (await live.public.get("/openapi.json")).json()["paths"]["/events/{event_id}"][
        "patch"
    ]
    assert documented["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HTTPValidationError"
    }


# NaN and Infinity ------------------------------------------------------------------------------
@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_422_and_never_stored(live: LiveStack, constant: str):
    lead = (await live.http.post("/leads", json=sign_up_body(email()))).json()["lead"]
    cart_id = f"c-{uuid.uuid4().hex[:8]}"
    body = (
        '{{"type": "cart_updated", "lead": "{}", "cart": {{"id": "{}", "items": [], "total": {}}}}}'
    ).format(lead["id"], cart_id, constant)
    response = await live.http.post(
        "/events/track", content=body, headers={"content-type": "application/json"}
    )
    assert_validation_error(response, "body")
    with Session(live.engine) as session:
        assert session.get(Cart, cart_id) is None
    before = rows(live, Event)
    odd = await live.http.post(
        "/events",
        content=json.dumps(event_body())[:-1] + f', "duration_minutes": {constant}}}',
        headers={"content-type": "application/json"},
    )
    assert_validation_error(odd, "body", "duration_minutes")
    assert rows(live, Event) == before


# Knobs that start campaigns ----------------------------------------------------------------------
@pytest.mark.parametrize("value", [True, "60"])
async def test_a_sweep_takes_only_a_whole_number_of_days(live: LiveStack, value):
    response = await live.http.post("/sweeps/re-engagement", json={"inactive_days": value})
    assert_validation_error(response, "body", "inactive_days")


# Sizes -------------------------------------------------------------------------------------------
async def raw_request(live: LiveStack, head: bytes, body_chunks) -> tuple[bytes, int]:
    """Send a request over a plain socket, body chunk by chunk, reading the answer as soon as it
    comes. Returns (the response's head and body, bytes of body sent before the answer came)."""
    url = urlsplit(str(live.http.base_url))
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(head)
    sent = 0
    answer = asyncio.ensure_future(reader.read(65536))
    try:
        for chunk in body_chunks:
            if answer.done():
                break
            writer.write(chunk)
            sent += len(chunk)
            try:
                await asyncio.wait_for(writer.drain(), timeout=10)
            except (TimeoutError, ConnectionError):
                break
            await asyncio.sleep(0)
        data = await asyncio.wait_for(answer, timeout=20)
        while b"\r\n\r\n" not in data:
            more = await asyncio.wait_for(reader.read(65536), timeout=20)
            if not more:
                break
            data += more
        head_end = data.index(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in data[:head_end].split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(data) < head_end + 4 + length:
            more = await asyncio.wait_for(reader.read(65536), timeout=20)
            if not more:
                break
            data += more
        return data, sent
    finally:
        answer.cancel()
        writer.close()


def parse(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_a_200_mb_login_is_refused_from_its_content_length_without_reading_it(
    live: LiveStack,
):
    """Unauthenticated, and nothing of the body need be sent: the declared size is enough."""
    host = urlsplit(str(live.http.base_url)).netloc.encode()
    head = (
        b"POST /codec/login HTTP/1.1\r\nHost: "
        + host
        + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 209715200\r\n\r\n"
    )
    started = time.monotonic()
    data, _ = await raw_request(live, head, [b"api_key=" + b"x" * 1000])
    code, headers, body = parse(data)
    assert code == 413 and headers["content-type"].startswith("application/json"), data[:300]
    assert "MB" in json.loads(body)["detail"]
    assert time.monotonic() - started < 5


async def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit(live: LiveStack):
    """No Content-Length (chunked): the server counts while reading and answers 413 well before
    200 MB have been sent, for an unauthenticated route too."""
    limit = live.settings.max_request_bytes
    host = urlsplit(str(live.http.base_url)).netloc.encode()
    head = (
        b"POST /codec/login HTTP/1.1\r\nHost: "
        + host
        + b"\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    data, sent = await raw_request(live, head, (chunk for _ in range(200 * 16)))
    code, headers, body = parse(data)
    assert code == 413 and headers["content-type"].startswith("application/json"), data[:300]
    assert json.loads(body)["detail"]
    assert sent < limit + 32 * 2**20, sent  # the limit, plus what the sockets' buffers took in


async def post_raw(
    live: LiveStack, path: str, body: bytes, content_type: str
) -> tuple[int, dict, bytes]:
    """POST with a Content-Length, reading the answer while sending (the server may answer 413
    before the body is sent, as it should; httpx would only read after sending it all)."""
    host = urlsplit(str(live.http.base_url)).netloc.encode()
    head = (
        b"POST "
        + path.encode()
        + b" HTTP/1.1\r\nHost: "
        + host
        + b"\r\nX-API-Key: "
        + live.settings.api_key.encode()
        + b"\r\nContent-Type: "
        + content_type.encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    data, _ = await raw_request(
        live, head, (body[i : i + 65536] for i in range(0, len(body), 65536))
    )
    return parse(data)


async def test_a_json_body_over_the_limit_is_413_and_stores_nothing(live: LiveStack):
    before = rows(live, Event)
    speakers = ["x" * 100_000] * (live.settings.max_request_bytes // 100_000 + 1)
    code, headers, body = await post_raw(
        live, "/events", json.dumps(event_body(speakers=speakers)).encode(), "application/json"
    )
    assert (
        code == 413
        and headers["content-type"].startswith("application/json")
        and json.loads(body)["detail"]
    )
    assert rows(live, Event) == before


async def test_the_csv_import_has_its_own_larger_limit(live: LiveStack):
    padding = b"a@example.com\n" * (
        live.settings.max_request_bytes // 14 + 1000
    )  # over the default limit
    malformed = b"email,colour\n" + padding  # read whole, then refused for its header: not a 413
    response = await live.http.post(
        "/leads/import", files={"file": ("x.csv", malformed, "text/csv")}
    )
    assert "unknown columns" in assert_validation_error(response)[0]["msg"]
    huge = b"email\n" + b"a@example.com\n" * (live.settings.import_max_bytes // 14 + 1000)
    boundary = "relance-test-boundary"
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n'
            f"Content-Type: text/csv\r\n\r\n"
        ).encode()
        + huge
        + f"\r\n--{boundary}--\r\n".encode()
    )
    before = rows(live, Lead)
    code, headers, body = await post_raw(
        live, "/leads/import", form, f"multipart/form-data; boundary={boundary}"
    )
    assert code == 413 and json.loads(body)["detail"]
    assert rows(live, Lead) == before


@pytest.mark.parametrize(
    "body",
    [
        event_body(speakers=["x" * 400_000]),
        event_body(topics=["t" * 1000]),
    ],
)
async def test_long_strings_and_lists_in_an_event_are_422(live: LiveStack, body: dict):
    before = rows(live, Event)
    assert_validation_error(await live.http.post("/events", json=body), "body")
    assert rows(live, Event) == before


async def test_a_422_does_not_echo_a_big_input_back(live: LiveStack):
    big = "x" * 900_000  # three of them: under the request size limit
    response = await live.http.post(
        "/events", json=event_body(speakers=[big], name=big, topics=[big])
    )
    detail = assert_validation_error(response, "body")
    assert len(response.content) < 20_000, len(response.content)
    assert any("900000 characters" in json.dumps(d["input"]) for d in detail if "input" in d)
    many = await live.http.post("/lists/good-name/members", json={"lead_ids": [{"x": 1}] * 900})
    assert_validation_error(many, "body", "lead_ids")
    assert len(many.content) < 20_000, len(many.content)


# Control characters in names ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["Ana\r\nBcc: all@example.com", "Ana\nMaria", "Ana\x00", "Ana\tMaria", "Ana\u2028B"]
)
async def test_a_name_with_control_characters_is_refused_with_a_422(live: LiveStack, name: str):
    before = rows(live, Lead)
    response = await live.http.post("/leads", json=sign_up_body(email(), first_name=name))
    detail = assert_validation_error(response, "body", "first_name")
    assert "control character" in detail[0]["msg"]
    assert rows(live, Lead) == before


async def test_names_in_other_scripts_and_with_joiners_are_fine(live: LiveStack):
    for name in ("Seán O'Brien & Co", "José-María", "محمد", "नमस्\u200dते", "Zoë 👩\u200d💻"):
        response = await live.http.post("/leads", json=sign_up_body(email(), first_name=name))
        assert response.status_code == 201 and response.json()["lead"]["first_name"] == name


async def test_an_event_name_with_a_line_break_is_refused(live: LiveStack):
    assert_validation_error(
        await live.http.post("/events", json=event_body(name="Webinar\r\nBcc: x@example.com")),
        "body",
        "name",
    )


async def test_a_csv_row_with_a_line_break_in_a_quoted_name_is_rejected_with_its_line(
    live: LiveStack,
):
    good, bad = email(), email()
    csv = f'email,first_name\n{good},Ana\n{bad},"Eve\r\nBcc: all@example.com"\n'.encode()
    response = await live.http.post("/leads/import", files={"file": ("x.csv", csv, "text/csv")})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 1
    [rejected] = report["rejected"]
    assert rejected["line"] == 4 and rejected["email"] == bad  # the quoted field spans lines 3-4
    assert "first_name" in rejected["reason"] and "control character" in rejected["reason"]
    with Session(live.engine) as session:
        assert session.exec(select(Lead).where(Lead.email == bad)).first() is None
        assert session.exec(select(Lead).where(Lead.email == good)).first() is not None


@pytest.mark.parametrize(
    "when,reason",
    [
        ("0001-01-01T00:00:00+01:00", "consented_at must be from 2000-01-01"),
        ("1850-01-01", "consented_at must be from 2000-01-01"),
        ("9999-12-31T23:00:00-05:00", "consented_at is in the future"),
    ],
)
async def test_a_csv_consent_date_out_of_range_rejects_its_row_only(
    live: LiveStack, when: str, reason: str
):
    good, bad = email(), email()
    csv = (
        f"email,consent,source_url,consented_at,wording_version\n"
        f"{good},email,https://example.com/f,2025-01-01T10:00:00Z,v1\n"
        f"{bad},email,https://example.com/f,{when},v1\n"
    ).encode()
    response = await live.http.post("/leads/import", files={"file": ("x.csv", csv, "text/csv")})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 1 and [r["email"] for r in report["rejected"]] == [bad]
    assert reason in report["rejected"][0]["reason"]


# Races ------------------------------------------------------------------------------------------
async def test_fifty_concurrent_sign_ups_of_one_address_end_as_one_lead(live: LiveStack):
    address = email()
    async with httpx.AsyncClient(
        base_url=live.http.base_url,
        headers=live.http.headers,
        limits=httpx.Limits(max_connections=50),
        timeout=60,
    ) as http:
        responses = await asyncio.gather(
            *(http.post("/leads", json=sign_up_body(address)) for _ in range(50))
        )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 49 + [201], [
        (r.status_code, r.text[:200]) for r in responses if r.status_code >= 300
    ]
    assert len({r.json()["lead"]["id"] for r in responses}) == 1
    with Session(live.engine) as session:
        assert (
            session.exec(select(func.count()).select_from(Lead).where(Lead.email == address)).one()
            == 1
        )


async def test_concurrent_updates_of_new_carts_end_as_single_updates_do(live: LiveStack):
    lead = (await live.http.post("/leads", json=sign_up_body(email()))).json()["lead"]
    carts = [f"c-{uuid.uuid4().hex[:10]}" for _ in range(15)]
    item = {"sku": "B-1", "name": "The Shining", "qty": 1, "unit_price": 12.5}

    def event(cart_id: str) -> dict:
        return {
            "type": "cart_updated",
            "lead": lead["id"],
            "cart": {"id": cart_id, "items": [item], "currency": "EUR", "total": 12.5},
        }

    async with httpx.AsyncClient(
        base_url=live.http.base_url,
        headers=live.http.headers,
        limits=httpx.Limits(max_connections=150),
        timeout=120,
    ) as http:
        responses = await asyncio.gather(
            *(http.post("/events/track", json=event(c)) for c in carts * 10)
        )
    problems = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 202]
    assert not problems, problems
    with Session(live.engine) as session:
        stored = session.exec(select(Cart).where(Cart.lead_id == lead["id"])).all()
    assert sorted(c.id for c in stored) == sorted(carts)


def test_concurrent_first_sign_ups_and_cart_updates_on_postgres_end_as_one_row(postgres_url):  # noqa: F811
    """Truly concurrent transactions: a dozen first sign-ups of one address, a dozen first updates
    of one new cart, at once. Each race ends as one insert and updates, never a unique-key error."""
    engine = make_engine(postgres_url)
    email = f"{unique_id('race')}@example.com"
    start = threading.Barrier(12)

    def sign_up(_: int) -> tuple[str, bool]:
        with Session(engine) as session:
            start.wait()
            lead, created = crud.save_sign_up(
                session=session,
                data=LeadCreate(email=email, first_name="Lin"),
                default_phone_region="FR",
            )
            return lead.id, created

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(sign_up, range(12)))
    assert [created for _, created in results].count(True) == 1 and len(
        {lead_id for lead_id, _ in results}
    ) == 1
    lead_id = results[0][0]
    with Session(engine) as session:
        assert (
            session.exec(select(func.count()).select_from(Lead).where(Lead.email == email)).one()
            == 1
        )

    cart_id = unique_id("cart")
    item = {"sku": "B-1", "name": "The Shining", "qty": 1, "unit_price": 12.5}

    def update_cart(n: int) -> int:
        with Session(engine) as session:
            start.wait()
            return crud.save_cart(
                session=session,
                lead_id=lead_id,
                cart=CartIn(id=cart_id, items=[item] * (n % 3 + 1), total=12.5),
            )

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert sorted(pool.map(update_cart, range(12))) == [1] * 4 + [2] * 4 + [3] * 4
    with Session(engine) as session:
        assert (
            session.exec(select(func.count()).select_from(Cart).where(Cart.id == cart_id)).one()
            == 1
        )


# Host header, trailing slashes --------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/t/c/sometoken/", "/t/o/sometoken/", "/leads/", "/health/", "/events/track/"]
)
async def test_no_answer_is_built_from_the_host_header(live: LiveStack, path: str):
    response = await live.http.request(
        "POST" if path.startswith("/events") else "GET",
        path,
        headers={"Host": "evil.com"},
        follow_redirects=False,
    )
    assert (
        "evil.com" not in response.headers.get("location", "") and "evil.com" not in response.text
    )
    assert not response.is_redirect, response.headers
    assert response.status_code == 404 and response.json()["detail"]


# Unexpected errors ------------------------------------------------------------------------------
async def test_an_unexpected_error_is_a_json_500_and_is_logged(settings, tmp_path: Path, caplog):
    """A database without its tables (never migrated): the failure is the server's, said in JSON."""
    broken = settings.model_copy(
        update={
            "database_url": f"sqlite:///{tmp_path / 'empty.db'}",
            "temporal_address": "127.0.0.1:1",
        }
    )
    app = create_app(broken)
    caplog.set_level(logging.ERROR)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            headers={"X-API-Key": settings.api_key},
        ) as http:
            response = await http.get(f"/leads/{uuid.uuid4().hex}")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    assert "no such table" not in detail  # the cause is in the log, not shown to the caller
    assert any("GET /leads/" in r.getMessage() and r.exc_info for r in caplog.records), (
        caplog.records
    )


async def test_a_422_raised_with_a_sentence_still_answers_the_documented_list(settings):
    """Code that raises ``HTTPException(422, "a sentence")`` (as routes did) still answers the
    shape OpenAPI documents for every 422."""
    from fastapi import HTTPException

    app = create_app(settings)

    @app.get("/sentence-422")
    def sentence() -> None:
        raise HTTPException(422, "the event is over")

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://testserver"
    ) as http:
        response = await http.get("/sentence-422")
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"loc": [], "msg": "the event is over", "type": "value_error"}]
    }


async def test_nul_characters_are_refused_before_postgresql_sees_them(
    postgres_url,
    settings,  # noqa: F811
    dev_server_env,
):
    """PostgreSQL cannot hold NUL in text: a NUL in a path, a query or a JSON id is the caller's
    mistake (4xx), not a server error."""
    app = create_app(
        settings.model_copy(
            update={
                "database_url": postgres_url,
                "temporal_address": dev_server_env.client.service_client.config.target_host,
            }
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            headers={"X-API-Key": settings.api_key},
        ) as http:
            event = (await http.post("/events", json=event_body())).json()
            for method, path, kwargs in [
                ("GET", "/leads/a%00b", {}),
                ("GET", "/events/a%00b", {}),
                ("GET", "/tasks/a%00b", {}),
                ("GET", "/lists/a%00b/members", {}),
                ("GET", "/tasks", {"params": {"assignee": "a\x00b@example.com"}}),
                ("GET", "/leads", {"params": {"after": "a\x00b"}}),
                ("POST", "/lists/vip/members", {"json": {"lead_ids": ["a\x00b"]}}),
                ("POST", "/events/track", {"json": {"type": "demo_booked", "lead": "a\x00b"}}),
                (
                    "POST",
                    "/events/track",
                    {
                        "json": {
                            "type": "page_view",
                            "lead": "a\x00b",
                            "url": "https://example.com/",
                        }
                    },
                ),
                (
                    "POST",
                    f"/events/{event['id']}/attendance",
                    {"json": {"emails": ["a\x00b@example.com"]}},
                ),
                (
                    "POST",
                    "/leads",
                    {
                        "json": {
                            "email": email(),
                            "consents": [{"channel": "email", "purpose": "a\x00"}],
                        }
                    },
                ),
            ]:
                response = await http.request(method, path, **kwargs)
                assert 400 <= response.status_code < 500, (
                    method,
                    path,
                    kwargs,
                    response.status_code,
                    response.text,
                )
                assert response.json()["detail"]
