"""The hosted preference page, public: the "Choose what you receive" link in every marketing
email's footer (template context ``preferences_url``) and the re-engagement journey's second
email.

``GET /p/{token}`` shows the lead's topics (on/off), pace (as sent, weekly at most, or a pause of
N weeks) and channels (email; SMS when the lead has a phone). ``POST /p/{token}`` saves them
(``action=save``) or unsubscribes from everything (``action=unsubscribe_all``: every channel's
marketing consent withdrawn, and the one-click unsubscribe recorded, which suppresses the address
and tells the lead's journey).

The signed token (its own kind, ``preferences``) is the only authority: no cookie, no login, so
no cross-site request can act without it. GET and HEAD change no preference (a GET counts as a
click on the email's link, as a tracked link would). A forged, tampered or expired token gets a
404 page and changes nothing; a form that does not make sense gets a 422 page and changes
nothing. No redirect: the answer is the page itself. Database work only (no Temporal call on the
request path); every change is in the consent ledger with the page as its source, the browser's
IP and user agent (relance/services/preferences.py).
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlmodel import Session

from api.deps import DatabaseDep, HitsDep, SettingsDep, SignerDep
from api.errors import error_responses
from api.routes.tracking import keep
from api.routes.unsubscribe import INVALID, _page
from relance.contracts.channels import channel as channel_of
from relance.contracts.signals import CLICKED, UNSUBSCRIBED
from relance.domain.models import Lead
from relance.domain.rendering import TEMPLATES_DIR
from relance.domain.settings import Settings
from relance.domain.tokens import TokenSigner, TrackingToken
from relance.services import preferences
from relance.services.tracking import Hit, HitRecorder

router = APIRouter(prefix="/p", tags=["consent"])

_PAGES = Environment(
    loader=FileSystemLoader(str(TEMPLATES_DIR / "pages")),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
PAUSE_CHOICES = (1, 2, 4, 8, 12)

PAGE_ANSWERS = {
    404: {"description": "Invalid, tampered or expired link, or the lead is gone (an HTML page)"},
    422: {"description": "The form does not make sense: nothing was changed (an HTML page)"},
}


def _evidence(request: Request, token: TrackingToken) -> preferences.Evidence:
    return preferences.Evidence(
        source=f"preference page, message {token.message_id}",
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
        actor="preference page",
        wording_version=preferences.PAGE_WORDING,
    )


def _render(
    settings: Settings,
    lead: Lead,
    chosen: preferences.Preferences,
    token: str,
    *,
    notice: str = "",
    problems: list[str] | None = None,
    code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    topics = settings.topics()
    paused: datetime | None = chosen.paused_until
    html = _PAGES.get_template("preferences.html").render(
        title=f"Your preferences at {settings.brand_name}",
        brand_name=settings.brand_name,
        locale=lead.locale,
        first_name=lead.first_name,
        email=lead.email,
        action=f"/p/{token}",
        topics=topics.topics,
        chosen=chosen,
        frequency="pause" if paused else chosen.frequency,
        pause_weeks=PAUSE_CHOICES[1],
        pause_choices=PAUSE_CHOICES,
        paused_until=f"{paused:%d %B %Y}" if paused else "",
        channels=[channel_of(c) for c in _channels_of(lead)],
        notice=notice,
        problems=problems or [],
    )
    return HTMLResponse(
        html,
        status_code=code,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _channels_of(lead: Lead) -> tuple[str, ...]:
    """The channels the page offers: email, and SMS when the lead has a phone number."""
    return tuple(c for c in preferences.PREFERENCE_CHANNELS if c != "sms" or lead.phone)


def _load(*, session: Session, lead_id: str, settings: Settings):
    lead = session.get(Lead, lead_id)
    if lead is None:
        return None, None
    return lead, preferences.read(session, lead, settings.topics())


Visit = tuple[Request, HitRecorder]  # a GET's: who asked, where its click goes


async def _show(
    token: str, signer: TokenSigner, settings: Settings, db, *, visit: Visit | None = None
) -> HTMLResponse:
    valid = signer.verify("preferences", token)
    if valid is None:
        return _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
    lead, chosen = await db.run(_load, lead_id=valid.lead_id, settings=settings)
    if lead is None:
        return _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
    if visit is not None:
        # Opening the page from an email is a click on it (the re-engagement journey's second
        # email asks for exactly that): counted like any tracked link, through the outbox.
        request, hits = visit
        page = TrackingToken(
            "click",
            valid.message_id,
            valid.lead_id,
            valid.workflow_id,
            f"{settings.public_base_url.rstrip('/')}/p",
            signed_at=valid.signed_at,  # a scanner opening it at once is a machine's click
        )
        await keep(hits, settings, request, page, CLICKED)
    return _render(settings, lead, chosen, token)


@router.get("/{token}", response_class=HTMLResponse, responses=PAGE_ANSWERS)
async def preference_page(
    token: str,
    request: Request,
    signer: SignerDep,
    settings: SettingsDep,
    db: DatabaseDep,
    hits: HitsDep,
) -> HTMLResponse:
    return await _show(token, signer, settings, db, visit=(request, hits))


@router.head(
    "/{token}",
    response_class=HTMLResponse,
    responses=PAGE_ANSWERS,
    summary="Preference page (headers only)",
)
async def preference_page_head(
    token: str, signer: SignerDep, settings: SettingsDep, db: DatabaseDep
) -> HTMLResponse:
    """Answers what GET would, without a body; it changes nothing and counts no click."""
    return await _show(token, signer, settings, db)


def _change_of(form, lead: Lead, settings: Settings) -> tuple[preferences.Change, list[str]]:
    """The form as a change, and what is wrong with it. Boxes not ticked are off: every topic
    and every offered channel is set, whatever the form sends."""
    topics = settings.topics()
    picked = form.getlist("topic")
    problems = [
        f"topic {k!r} is not one of {', '.join(topics.keys)}"
        for k in picked
        if topics.get(k) is None
    ]
    change = preferences.Change(
        topics={t.key: t.key in picked for t in topics.topics},
        channels={c: c in form.getlist("channel") for c in _channels_of(lead)},
    )
    frequency = form.get("frequency", "as_sent")
    if frequency == "pause":
        weeks = form.get("pause_weeks", "")
        if not (
            isinstance(weeks, str)
            and weeks.isdigit()
            and 1 <= int(weeks) <= preferences.MAX_PAUSE_WEEKS
        ):
            problems.append(f"a pause is 1 to {preferences.MAX_PAUSE_WEEKS} weeks")
        else:
            change.pause_weeks = int(weeks)
    elif frequency in preferences.FREQUENCIES:
        change.frequency, change.pause_weeks = frequency, 0
    else:
        problems.append("how often: as they are sent, weekly at most, or a pause")
    return change, problems + preferences.problems(change, topics)


def _save(*, session: Session, lead_id: str, form, settings: Settings, evidence):
    lead = session.get(Lead, lead_id)
    if lead is None:
        return None, None, []
    change, problems = _change_of(form, lead, settings)
    if problems:
        return lead, preferences.read(session, lead, settings.topics()), problems
    saved = preferences.save(
        session,
        lead,
        settings.topics(),
        change,
        evidence,
        suppression_key=settings.suppression_hash_key,
    )
    return lead, saved, []


def _leave(*, session: Session, lead_id: str, evidence) -> bool:
    lead = session.get(Lead, lead_id)
    if lead is None:
        return False
    preferences.withdraw_all(session, lead, evidence)
    return True


@router.post(
    "/{token}",
    response_class=HTMLResponse,
    responses={
        **PAGE_ANSWERS,
        **error_responses(
            503,
            description="The database does not accept writes: nothing was changed, retry (JSON)",
        ),
    },
)
async def save_preferences(
    token: str,
    request: Request,
    signer: SignerDep,
    settings: SettingsDep,
    db: DatabaseDep,
    hits: HitsDep,
) -> HTMLResponse:
    valid = signer.verify("preferences", token)
    if valid is None:
        return _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
    form = await request.form()
    evidence = _evidence(request, valid)
    action = form.get("action", "save")
    if action not in ("save", "unsubscribe_all"):
        return _page(
            "This form is not one of ours",
            "<p>Nothing was changed. Open the link of your email again.</p>",
            code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    if action == "unsubscribe_all":
        if not await db.run(_leave, lead_id=valid.lead_id, evidence=evidence):
            return _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
        # The one-click unsubscribe's own path: the address suppressed, the journey told.
        await hits.record(Hit(valid, UNSUBSCRIBED, evidence.user_agent, evidence.ip))
        return _page(
            "You are unsubscribed from everything",
            f"<p>You will not receive marketing messages from {escape(settings.brand_name)} "
            "any more, on any channel.</p>",
        )
    lead, chosen, problems = await db.run(
        _save, lead_id=valid.lead_id, form=form, settings=settings, evidence=evidence
    )
    if lead is None:
        return _page(*INVALID, code=status.HTTP_404_NOT_FOUND)
    if problems:
        return _render(
            settings,
            lead,
            chosen,
            token,
            problems=problems,
            code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )
    return _render(settings, lead, chosen, token, notice="Your preferences are saved.")
