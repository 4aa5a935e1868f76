"""Security: forged links do nothing, the API key guards everything but the public
endpoints, lead ids cannot be guessed."""

from __future__ import annotations

import re
import uuid

from itsdangerous import URLSafeTimedSerializer

from tests.conftest import LiveStack
from tests.test_api_welcome_e2e import enroll, journey_when, links, new_email, sign_up_body
from tests.waiting import settled_hits, signals_received

# What a mail client, a browser or a load balancer reaches without a key. Everything else needs
# X-API-Key.
PUBLIC_PREFIXES = ("/t/", "/u/", "/p/", "/confirm/", "/health", "/docs", "/redoc", "/openapi.json")


CODEC = URLSafeTimedSerializer(
    "only-for-its-payload-codec"
)  # (de)compresses and base64s like the real one


def retampered(token: str, field: str, value: str) -> str:
    """The token with one field of its payload changed, its timestamp and signature kept."""
    payload, timestamp, signature = token.rsplit(".", 2)
    content = CODEC.load_payload(payload.encode())
    content[field] = value
    return ".".join((CODEC.dump_payload(content).decode(), timestamp, signature))


def forged(token: str, field: str, value: str, salt: str) -> str:
    """The token re-signed with the right salt but a guessed secret key."""
    content = CODEC.load_payload(token.rsplit(".", 2)[0].encode())
    content[field] = value
    return URLSafeTimedSerializer("guessed-secret", salt=salt).dumps(content)


async def test_tokens_tampered_in_every_field_signal_nothing_and_redirect_nowhere(live: LiveStack):
    lead_id, email = await enroll(live)
    other_id, _ = await enroll(live)
    [mail] = await live.sink.wait_for_mail(to=email)
    [pixel] = links(mail.html, "o")
    click = links(mail.html, "c")[0]
    open_token, click_token = pixel.rsplit("/", 1)[1], click.rsplit("/", 1)[1]

    changes = {
        "m": uuid.uuid4().hex,
        "l": other_id,
        "w": f"welcome-{other_id}",
        "u": "https://evil.example/phish",
    }
    bad_clicks = [retampered(click_token, field, value) for field, value in changes.items()]
    bad_clicks += [
        forged(click_token, field, value, "relance.click") for field, value in changes.items()
    ]
    bad_clicks += [
        open_token,  # an open token is not a click token
        click_token[:-5] + ("A" if click_token[-5] != "A" else "B") + click_token[-4:],  # signature
        click_token.replace(".", "..", 1),
        "",
        "x" * 5000,
    ]
    for bad in bad_clicks:
        response = await live.public.get(f"/t/c/{bad}")
        assert response.status_code in (404, 405) and "location" not in response.headers, bad
    for field, value in changes.items():
        for bad in (
            retampered(open_token, field, value),
            forged(open_token, field, value, "relance.open"),
        ):
            response = await live.public.get(f"/t/o/{bad}")
            assert response.status_code == 200 and response.headers["content-type"] == "image/gif"

    # The valid click still goes exactly where it was signed to go, whatever the query string says.
    response = await live.public.get(
        click, params={"url": "https://evil.example", "next": "//evil.example"}
    )
    assert (
        response.status_code == 302
        and response.headers["location"] == "https://example.com/guides/first-journey"
    )

    # Hits are stored in the order they arrive and a click before it is answered: the valid click
    # is stored after every bad hit that was wrongly kept. Once the outbox has settled it and
    # everything else of these leads', a wrongly kept hit would have reached its journey.
    kept = await settled_hits(live.engine, [lead_id, other_id], count=1)
    assert [(e.kind, e.lead_id) for e in kept] == [("clicked", lead_id)]
    state = await journey_when(live, other_id, lambda s: s["step"] == "waiting_for_open")
    assert not state["opened"] and not state["clicked"]
    assert not {"opened", "clicked"} & set(
        await signals_received(live.temporal, f"welcome-{other_id}")
    )


async def test_every_management_endpoint_refuses_a_request_without_the_api_key(live: LiveStack):
    from api.main import create_app

    paths = create_app(live.settings).openapi()["paths"]
    guarded = {
        path: methods for path, methods in paths.items() if not path.startswith(PUBLIC_PREFIXES)
    }
    assert len(guarded) >= 10, list(paths)
    for template, methods in guarded.items():
        path = re.sub(r"\{[^}]+\}", uuid.uuid4().hex, template)
        for method in methods:
            for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": live.settings.api_key + "x"}):
                response = await live.public.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, template, headers, response.text)
                assert re.search(r"API.Key|API key", response.json()["detail"]), response.text


async def test_lead_ids_are_random_and_a_guessed_one_is_404(live: LiveStack):
    ids = []
    for _ in range(5):
        response = await live.http.post("/leads", json=sign_up_body(new_email()))
        ids.append(response.json()["lead"]["id"])
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    numbers = sorted(int(i, 16) for i in ids)
    assert (
        min(b - a for a, b in zip(numbers, numbers[1:], strict=False)) > 2**64
    )  # nowhere near consecutive
    for guess in {
        f"{int(ids[0], 16) + 1:032x}",
        f"{int(ids[0], 16) - 1:032x}",
        ids[0][:-1] + "0",
        "1",
        "0" * 32,
    }:
        if guess in ids:
            continue
        response = await live.http.get(f"/leads/{guess}")
        assert response.status_code == 404, guess
