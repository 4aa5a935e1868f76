"""Bad input gets a clear 4xx and changes nothing; management endpoints need the API key."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from relance.domain.models import Consent, Lead
from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import sign_up_body


def counts(live: LiveStack) -> tuple[int, int]:
    with Session(live.engine) as session:
        return (
            session.exec(select(func.count()).select_from(Lead)).one(),
            session.exec(select(func.count()).select_from(Consent)).one(),
        )


def email() -> str:
    return f"bad-{uuid.uuid4().hex[:8]}@example.com"


BAD_SIGN_UPS = {
    "missing email": lambda: {k: v for k, v in sign_up_body(email()).items() if k != "email"},
    "invalid email": lambda: sign_up_body("not-an-email"),
    "invalid phone": lambda: sign_up_body(email(), phone="12"),
    "unknown time zone": lambda: sign_up_body(email(), time_zone="Mars/Olympus"),
    "bad locale": lambda: sign_up_body(email(), locale="french!"),
    "unknown field": lambda: sign_up_body(email(), favourite_colour="blue"),
    "unknown journey": lambda: sign_up_body(email(), journeys=["nope"]),
    "unknown consent channel": lambda: {
        **sign_up_body(email()),
        "consents": [{"channel": "pigeon"}],
    },
    "consent ip not an ip": lambda: {
        **sign_up_body(email()),
        "consents": [{"channel": "email", "ip": "x"}],
    },
}


@pytest.mark.parametrize("case", BAD_SIGN_UPS)
async def test_bad_sign_up_is_refused_with_a_clear_message_and_writes_nothing(
    live: LiveStack, case: str
):
    before = counts(live)
    response = await live.http.post("/leads", json=BAD_SIGN_UPS[case]())
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail[0]["msg"] and detail[0]["loc"][0] == "body"
    assert counts(live) == before


async def test_malformed_json_is_refused(live: LiveStack):
    before = counts(live)
    response = await live.http.post(
        "/leads",
        content=b'{"email": "a@example.com",',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422 and "JSON" in response.text
    assert counts(live) == before


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/leads/{id}"),
        ("GET", "/leads/{id}/messages"),
        ("POST", "/leads/{id}/journeys/welcome"),
        ("GET", "/leads/{id}/journeys/welcome"),
        ("GET", "/leads/{id}/consents"),
        ("GET", "/leads/{id}/export"),
        ("DELETE", "/leads/{id}"),
    ],
)
async def test_unknown_lead_is_404(live: LiveStack, method: str, path: str):
    lead_id = uuid.uuid4().hex
    response = await live.http.request(method, path.format(id=lead_id))
    assert response.status_code == 404 and response.json() == {
        "detail": f"no lead with id {lead_id}"
    }


async def test_an_unknown_journey_is_404_and_a_name_of_no_journey_shape_422(live: LiveStack):
    """Journeys written as data are enrolled by their key, which only the database knows."""
    lead = (await live.http.post("/leads", json=sign_up_body(email()))).json()["lead"]
    response = await live.http.post(f"/leads/{lead['id']}/journeys/not-a-journey")
    assert response.status_code == 404
    assert response.json() == {
        "detail": "no journey named 'not-a-journey' (neither coded nor defined)"
    }
    assert (await live.http.post(f"/leads/{lead['id']}/journeys/Not%20One")).status_code == 422


async def test_a_lead_never_enrolled_has_no_journey_state(live: LiveStack):
    lead = (await live.http.post("/leads", json=sign_up_body(email()))).json()["lead"]
    response = await live.http.get(f"/leads/{lead['id']}/journeys/welcome")
    assert response.status_code == 404 and "never enrolled" in response.json()["detail"]


@pytest.mark.parametrize(
    "headers,detail",
    [
        ({}, "missing X-API-Key header"),
        ({"X-API-Key": "wrong"}, "invalid API key"),
    ],
)
async def test_management_endpoints_need_the_api_key(live: LiveStack, headers: dict, detail: str):
    before = counts(live)
    for method, path in [
        ("POST", "/leads"),
        ("GET", f"/leads/{uuid.uuid4().hex}"),
        ("DELETE", f"/leads/{uuid.uuid4().hex}"),
        ("GET", f"/leads/{uuid.uuid4().hex}/export"),
        ("GET", "/audit"),
    ]:
        response = await live.public.request(
            method, path, headers=headers, json=sign_up_body(email())
        )
        assert response.status_code == 401 and response.json() == {"detail": detail}
    assert counts(live) == before


async def test_tracking_endpoints_are_public(live: LiveStack):
    response = await live.public.get("/t/o/anything")
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    assert (await live.public.get("/health")).json()["temporal"] == "ok"


# Re-engagement: page views and sweeps ------------------------------------------------------------
def activity_rows(live: LiveStack) -> int:
    from relance.domain.models import LeadActivity

    with Session(live.engine) as session:
        return session.exec(select(func.count()).select_from(LeadActivity)).one()


@pytest.mark.parametrize(
    "body",
    [
        {"type": "page_view", "lead": "x"},  # no url
        {"type": "page_view", "lead": "x", "url": "not a url"},
        {
            "type": "page_view",
            "lead": "x",
            "url": "https://example.com/",
            "referrer": "y",
        },  # unknown field
        {
            "type": "page_view",
            "lead": "x",
            "url": "https://example.com/",
            "category": "king,tolkien",
        },  # not one category
        {"type": "page_view", "lead": "x", "url": "https://example.com/", "category": ""},
        {"type": "page_visit", "lead": "x", "url": "https://example.com/"},  # unknown type
    ],
)
async def test_bad_page_view_is_422_and_records_nothing(live: LiveStack, body: dict):
    before = activity_rows(live)
    response = await live.http.post("/events/track", json=body)
    assert response.status_code == 422, response.text
    assert activity_rows(live) == before


async def test_page_view_of_an_unknown_lead_is_404(live: LiveStack):
    lead_id = uuid.uuid4().hex
    before = activity_rows(live)
    response = await live.http.post(
        "/events/track", json={"type": "page_view", "lead": lead_id, "url": "https://example.com/"}
    )
    assert response.status_code == 404 and response.json() == {
        "detail": f"no lead with id {lead_id}"
    }
    assert activity_rows(live) == before


@pytest.mark.parametrize("body", [{"inactive_days": 0}, {"inactive_days": "sixty"}, {"batch": 3}])
async def test_bad_sweep_request_is_422_naming_the_body(live: LiveStack, body: dict):
    response = await live.http.post("/sweeps/re-engagement", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "body"


async def test_sweeps_need_the_api_key_and_unknown_sweeps_are_404(live: LiveStack):
    assert (await live.public.post("/sweeps/re-engagement", json={})).status_code == 401
    response = await live.http.get("/sweeps/re-engagement/reengagement-sweep-manual-nope")
    assert response.status_code == 404 and "no re-engagement sweep" in response.json()["detail"]
    assert (await live.http.get("/sweeps/re-engagement/welcome-abc")).status_code == 404


# Sales tasks and nurturing events -----------------------------------------------------------------
async def test_unknown_task_is_404(live: LiveStack):
    task_id = uuid.uuid4().hex
    for response in (
        await live.http.get(f"/tasks/{task_id}"),
        await live.http.post(f"/tasks/{task_id}/complete", json={"outcome": "called"}),
    ):
        assert response.status_code == 404 and response.json() == {
            "detail": f"no sales task with id {task_id}"
        }


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"outcome": "maybe"},
        {"outcome": "called", "extra": 1},
        {"outcome": "called", "note": "x" * 2001},
    ],
)
async def test_bad_task_completion_is_422(live: LiveStack, body: dict):
    response = await live.http.post(f"/tasks/{uuid.uuid4().hex}/complete", json=body)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize("params", [{"status": "finished"}, {"limit": 0}, {"limit": 501}])
async def test_bad_task_query_is_422(live: LiveStack, params: dict):
    assert (await live.http.get("/tasks", params=params)).status_code == 422


async def test_task_endpoints_need_the_api_key(live: LiveStack):
    assert (await live.public.get("/tasks")).status_code == 401
    assert (
        await live.public.post(f"/tasks/{uuid.uuid4().hex}/complete", json={"outcome": "called"})
    ).status_code == 401


@pytest.mark.parametrize(
    "event,code",
    [
        ({"type": "asset_downloaded", "lead": "nobody", "asset": "white-paper"}, 404),
        ({"type": "asset_downloaded", "lead": "x", "asset": "white paper!"}, 422),
        ({"type": "asset_downloaded", "lead": "x"}, 422),
        ({"type": "demo_booked", "lead": "nobody"}, 404),
        ({"type": "demo_booked", "lead": "x", "when": "now"}, 422),
    ],
)
async def test_bad_nurturing_events_are_refused(live: LiveStack, event: dict, code: int):
    response = await live.http.post("/events/track", json=event)
    assert response.status_code == code, response.text


@pytest.mark.parametrize("country", ["XX", "France", "F1", ""])
async def test_a_sign_up_with_an_unknown_country_is_refused(live: LiveStack, country: str):
    before = counts(live)
    response = await live.http.post("/leads", json=sign_up_body(email(), country=country))
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == [
        "body",
        "country",
    ]
    assert counts(live) == before


async def test_bad_erasure_and_audit_input_is_refused_and_erases_nothing(live: LiveStack):
    lead = (await live.http.post("/leads", json=sign_up_body(email()))).json()["lead"]
    before = counts(live)
    too_long = await live.http.delete(f"/leads/{lead['id']}", params={"reason": "x" * 301})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == [
        "query",
        "reason",
    ]
    assert (await live.http.get("/audit", params={"limit": 0})).status_code == 422
    assert (await live.http.get("/audit", params={"limit": "many"})).status_code == 422
    assert counts(live) == before
    assert (await live.http.get(f"/leads/{lead['id']}")).status_code == 200


def list_rows(live: LiveStack) -> int:
    from relance.domain.models import ListMember

    with Session(live.engine) as session:
        return session.exec(select(func.count()).select_from(ListMember)).one()


@pytest.mark.parametrize(
    "path,body,code",
    [
        ("/lists/good-name/members", {}, 422),
        ("/lists/good-name/members", {"lead_ids": "abc"}, 422),
        ("/lists/good-name/members", {"lead_ids": []}, 422),
        ("/lists/good-name/members", {"lead_ids": ["x" * 33]}, 422),
        ("/lists/good-name/members", {"lead_ids": [uuid.uuid4().hex]}, 404),
        ("/lists/good-name/members", {"lead_ids": [uuid.uuid4().hex], "extra": 1}, 422),
        ("/lists/Bad%20Name/members", {"lead_ids": [uuid.uuid4().hex]}, 422),
    ],
)
async def test_bad_list_changes_are_refused_and_add_nobody(
    live: LiveStack, path: str, body: dict, code: int
):
    before = list_rows(live)
    response = await live.http.post(path, json=body)
    assert response.status_code == code, response.text
    assert response.json()["detail"]
    assert list_rows(live) == before


@pytest.mark.parametrize(
    "params",
    [
        {"segment": "tepid"},
        {"stage": "prospect"},
        {"limit": 0},
        {"limit": 501},
        {"after": "x" * 33},
    ],
)
async def test_bad_lead_listing_query_is_422(live: LiveStack, params: dict):
    response = await live.http.get("/leads", params=params)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize(
    "files,params",
    [
        ({"file": ("x.csv", b"first_name\nAna\n", "text/csv")}, {}),
        ({"file": ("x.csv", b"email,colour\na@example.com,red\n", "text/csv")}, {}),
        ({"file": ("x.csv", b"email\na@example.com\n", "text/csv")}, {"list": "Bad Name"}),
        ({"other": ("x.csv", b"email\na@example.com\n", "text/csv")}, {}),
    ],
)
async def test_bad_imports_are_refused_and_import_nothing(
    live: LiveStack, files: dict, params: dict
):
    before = counts(live)
    response = await live.http.post("/leads/import", files=files, params=params)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert counts(live) == before
