"""`make run`'s banner and the Temporal dev server it starts (relance/dev/devstack.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from relance.dev.devstack import EXAMPLE_SIGNUP, send_window_line
from relance.domain.settings import Settings
from tests.conftest import LiveStack

# Tuesday 2 June 2026: 19:00 UTC is 21:00 in Paris (summer time), 08:00 UTC is 10:00.
TUESDAY_EVENING = datetime(2026, 6, 2, 19, 0, tzinfo=UTC)
TUESDAY_MORNING = datetime(2026, 6, 2, 8, 0, tzinfo=UTC)
FRIDAY_EVENING = datetime(2026, 6, 5, 19, 0, tzinfo=UTC)


def dev_settings(**changes) -> Settings:
    return Settings(_env_file=None, **changes)


def test_at_nine_in_the_evening_the_banner_says_the_welcome_waits_for_the_morning():
    line = send_window_line(dev_settings(), TUESDAY_EVENING)
    assert line == (
        "send window on: weekdays 09:00–19:00 in the lead's time zone; "
        "next opening Wed 09:00 Europe/Paris (marketing sends wait until then)"
    )


def test_on_a_friday_evening_the_next_opening_is_monday():
    assert "next opening Mon 09:00 Europe/Paris" in send_window_line(dev_settings(), FRIDAY_EVENING)


def test_inside_the_window_the_banner_says_it_is_open():
    line = send_window_line(dev_settings(), TUESDAY_MORNING)
    assert (
        line
        == "send window on: weekdays 09:00–19:00 in the lead's time zone; open now in Europe/Paris"
    )


def test_a_configured_window_is_the_one_described():
    settings = dev_settings(
        send_window_days=[1, 3, 6],
        send_window_start="10:30",
        send_window_end="12:00",
        send_window_holidays=["2026-06-03"],
    )
    line = send_window_line(settings, TUESDAY_MORNING)  # Wednesday is a holiday: Saturday is next
    assert line.startswith(
        "send window on: Mon, Wed, Sat 10:30–12:00 in the lead's time zone, except 1 holiday(s);"
    )
    assert line.endswith("next opening Sat 10:30 Europe/Paris (marketing sends wait until then)")


def test_with_the_window_off_the_banner_says_messages_go_out_at_any_hour():
    line = send_window_line(dev_settings(send_window_enabled=False), TUESDAY_EVENING)
    assert (
        line == "send window off: marketing messages go out at any hour "
        "(RELANCE_SEND_WINDOW_ENABLED=false)"
    )


async def test_the_banner_example_sign_up_stores_its_consent_with_proof(live: LiveStack):
    body = json.loads(EXAMPLE_SIGNUP)
    body["email"] = f"ada-{uuid.uuid4().hex[:10]}@example.com"
    response = await live.http.post("/leads", json=body)
    assert response.status_code == 201, response.text
    consents = (await live.http.get(f"/leads/{response.json()['lead']['id']}/consents")).json()
    assert consents, consents
    for consent in consents:
        assert (
            consent["source_url"]
            and consent["ip"]
            and consent["user_agent"]
            and consent["wording_version"]
        ), consent
