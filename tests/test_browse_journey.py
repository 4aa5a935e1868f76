"""Browse abandonment: 3+ views of one category in 7 days, no purchase ->
a recommendation email 3 days after the last visit; a purchase in the category suppresses it."""

from __future__ import annotations

import re
from datetime import timedelta

from relance.contracts.signals import PAGE_VIEWED, PageViewSignal
from relance.dev.seeding import unique_id
from relance.domain.db import session_scope
from relance.domain.models import Order
from tests.conftest import LiveStack
from tests.test_api_nurturing_e2e import sign_up
from worker import build_worker
from workflows.browse import BrowseAbandonmentJourney, BrowseInput


async def browse(client, settings, engine, lead, views: list[str], *, before_result=None):
    async with build_worker(client, settings, engine):
        # Started, then signalled: the time-skipping server skips no time for a signal-with-start.
        handle = await client.start_workflow(
            BrowseAbandonmentJourney.run,
            BrowseInput(lead_id=lead.id),
            id=unique_id(f"browse-{lead.id}"),
            task_queue=settings.temporal_task_queue,
        )
        for category in views:
            await handle.signal(PAGE_VIEWED, PageViewSignal(category=category))
        if before_result:
            before_result()
        result = await handle.result()
        result.started = (await handle.describe()).start_time
        return result


async def test_three_views_of_an_author_get_the_recommendation_three_days_later(
    client, settings, engine, sink, make_lead
):
    lead = make_lead()
    result = await browse(
        client, settings, engine, lead, ["stephen-king", "tolkien", "stephen-king", "stephen-king"]
    )
    assert (result.outcome, result.category) == ("sent", "stephen-king")
    [mail] = await sink.wait_for_mail(to=lead.email)
    assert mail.subject == "Ada, our best of Stephen King" and "browsing Stephen King" in mail.text
    waited = result.messages[0].at - result.started  # the views came right after the start
    assert timedelta(days=3) <= waited < timedelta(days=3, minutes=1)


async def test_a_purchase_in_the_category_meanwhile_suppresses_it(
    client, settings, engine, sink, make_lead
):
    lead = make_lead()

    def buy_a_stephen_king() -> None:
        with session_scope(engine) as session:
            session.add(
                Order(
                    id=unique_id("order"),
                    lead_id=lead.id,
                    total=9.9,
                    items=[
                        {
                            "sku": "SK-1",
                            "name": "It",
                            "qty": 1,
                            "unit_price": 9.9,
                            "category": "stephen-king",
                        }
                    ],
                )
            )

    result = await browse(
        client, settings, engine, lead, ["stephen-king"] * 3, before_result=buy_a_stephen_king
    )
    assert result.outcome == "suppressed" and "bought in the category stephen-king" in result.reason
    assert sink.mails_to(lead.email) == []


async def test_two_views_are_not_enough(client, settings, engine, sink, make_lead):
    lead = make_lead()
    result = await browse(
        client, settings, engine, lead, ["stephen-king", "stephen-king", "tolkien"]
    )
    assert result.outcome == "no_interest" and sink.mails_to(lead.email) == []


async def test_page_views_with_a_category_start_the_journey_over_the_api(live: LiveStack):
    lead_id = (await sign_up(live))["lead"]["id"]
    for _ in range(3):
        response = await live.http.post(
            "/events/track",
            json={
                "type": "page_view",
                "lead": lead_id,
                "url": "https://example.com/b/it",
                "category": "stephen-king",
            },
        )
        assert response.status_code == 202, response.text
        assert response.json()["workflow_id"] == f"browse-{lead_id}"
    status = await live.temporal.get_workflow_handle(f"browse-{lead_id}").query("status")
    assert status["views"] == {"stephen-king": 3} and status["step"] == "waiting_after_last_visit"
    bad = await live.http.post(
        "/events/track",
        json={
            "type": "page_view",
            "lead": lead_id,
            "url": "https://example.com/",
            "category": "a,b",
        },
    )
    assert bad.status_code == 422
    await live.temporal.get_workflow_handle(f"browse-{lead_id}").terminate(
        "test over"
    )  # on a 3-day timer
    # The journey closed: within its cooldown (7 days), page views start no new one, and say why.
    again = await live.http.post(
        "/events/track",
        json={
            "type": "page_view",
            "lead": lead_id,
            "url": "https://example.com/b/it",
            "category": "stephen-king",
        },
    )
    assert again.status_code == 202 and again.json()["workflow_id"] is None
    assert re.search(
        r"no browse-abandonment journey: left the browse journey (just now|\d+ seconds? ago); "
        r"cooldown 7 days",
        again.json()["detail"],
    ), again.json()["detail"]
    assert (
        await live.temporal.get_workflow_handle(f"browse-{lead_id}").describe()
    ).status.name == "TERMINATED"
