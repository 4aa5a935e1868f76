"""The dashboard, /dashboard: the reports drawn for people (journeys' funnels, a journey's steps,
trend, messages and experiments, a lead's timeline), server-rendered with Jinja2.

Who may see it: whoever has the API key. A browser enters it once at ``/dashboard/login`` and
gets a session like the codec's (api/routes/codec.py): a signed cookie naming the key it was
opened with (changing the key ends every session), HttpOnly, SameSite=Strict, for /dashboard
only, 8 hours. Without one every page answers a redirect to the login form; a wrong key gets
the form again, with a message, never a figure. A script may send the key in ``X-API-Key``.

Everything is read through relance/services/reports.py and timeline.py (no SQL here). The charts
are drawn in the browser by plotly.js, served from the installed ``plotly`` package's own file:
nothing comes from a CDN, nothing is downloaded at run time. A page holds its charts' figures as
JSON data blocks (never executed); the one script that draws them is a file served here, so the
pages' Content-Security-Policy allows no inline script at all. Lead data is escaped everywhere
(Jinja2's autoescape; ``tojson`` in the data blocks), and no URL carries more of it than an id.
"""

from __future__ import annotations

import hmac
import re
from datetime import UTC, date, datetime, time, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlmodel import Session

from api import privacy
from api.deps import SettingsDep
from relance.domain import audit
from relance.domain.audit import key_fingerprint
from relance.domain.models import utcnow
from relance.domain.rendering import TEMPLATES_DIR
from relance.domain.settings import Settings
from relance.services import reports
from relance.services.journey_store import coded_keys
from relance.services.reports import Period
from relance.services.timeline import BadCursor, lead_header, timeline

router = APIRouter(prefix="/dashboard", include_in_schema=False)

COOKIE = "relance_dashboard"
SESSION_SECONDS = 8 * 3600
DEFAULT_DAYS = 30
MAX_DAYS = 3660
KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
LEAD_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
PLOTLY_JS = files("plotly") / "package_data" / "plotly.min.js"
STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# No inline script and nothing from another origin. plotly.js writes style attributes on the
# SVG it draws, which a style-src without 'unsafe-inline' refuses (the charts lose their look):
# inline styles are allowed, inline scripts never.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_PAGES = Environment(
    loader=FileSystemLoader(str(TEMPLATES_DIR / "pages" / "dashboard")),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_PAGES.filters["pct"] = lambda r: "—" if r is None else f"{r * 100:.1f} %"


# The session -----------------------------------------------------------------------------------
def _sessions(settings: Settings) -> URLSafeTimedSerializer | None:
    if not settings.secret_key:
        return None
    return URLSafeTimedSerializer(settings.secret_key, salt="relance.dashboard-session")


def _key_matches(settings: Settings, candidate: str | None) -> bool:
    return bool(
        settings.api_key
        and candidate
        and hmac.compare_digest(candidate.encode(), settings.api_key.encode())
    )


def actor_of(request: Request, settings: Settings) -> str | None:
    """Who is looking (the key's fingerprint, as the audit log names callers), or None: no key
    in ``X-API-Key``, no valid session."""
    if _key_matches(settings, request.headers.get("x-api-key")):
        return key_fingerprint(settings.api_key)
    cookie, sessions = request.cookies.get(COOKIE), _sessions(settings)
    if not (cookie and sessions and settings.api_key):
        return None
    try:
        opened_with = sessions.loads(cookie, max_age=SESSION_SECONDS)
    except BadSignature:
        return None
    fingerprint = key_fingerprint(settings.api_key)
    return fingerprint if opened_with == fingerprint else None


def _to_login() -> Response:
    return RedirectResponse("/dashboard/login", status.HTTP_303_SEE_OTHER, headers=PAGE_HEADERS)


def _page(name: str, code: int = status.HTTP_200_OK, **context: Any) -> HTMLResponse:
    html = _PAGES.get_template(name).render(**context)
    return HTMLResponse(html, status_code=code, headers=PAGE_HEADERS)


def _login_form(message: str = "", code: int = status.HTTP_200_OK) -> HTMLResponse:
    return _page("login.html", code, title="Sign in", message=message, signed_in=False)


@router.get("/login")
def login_page() -> HTMLResponse:
    return _login_form()


@router.post("/login")
async def login(request: Request, settings: SettingsDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    sessions = _sessions(settings)
    if sessions is None:
        return _login_form(
            "No secret key is configured on the server (RELANCE_SECRET_KEY).",
            status.HTTP_401_UNAUTHORIZED,
        )
    if not _key_matches(settings, (form.get("api_key") or [""])[0]):
        return _login_form("That is not the API key.", status.HTTP_401_UNAUTHORIZED)
    response = RedirectResponse("/dashboard", status.HTTP_303_SEE_OTHER, headers=PAGE_HEADERS)
    response.set_cookie(
        COOKIE,
        sessions.dumps(key_fingerprint(settings.api_key)),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/dashboard",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/dashboard/login", status.HTTP_303_SEE_OTHER, headers=PAGE_HEADERS)
    response.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return response


# Assets: plotly.js from the installed package, the page's own script and style --------------
@router.get("/assets/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(
        str(PLOTLY_JS),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/assets/{name}")
def asset(name: str) -> Response:
    if name not in ASSETS:
        return Response(status_code=status.HTTP_404_NOT_FOUND)
    return FileResponse(
        str(STATIC / name),
        media_type=ASSETS[name],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


# The range -----------------------------------------------------------------------------------
def _range(request: Request) -> tuple[Period, dict[str, str], str, str]:
    """The page's range from ``start`` and ``end`` (dates; ``end`` excluded), by default the
    last 30 days; a range that makes no sense is replaced by the default, with a message. Also
    what the picker shows, the query to keep in the page's links, and the message."""
    query = request.query_params
    now = utcnow()
    try:
        start, end = _day(query.get("start")), _day(query.get("end"))
    except ValueError:
        start = end = None
        problem = "A date is malformed (YYYY-MM-DD): showing the last 30 days."
    else:
        problem = ""
    until = end or now
    since = start or until - timedelta(days=DEFAULT_DAYS)
    if since >= until or until - since > timedelta(days=MAX_DAYS):
        problem = "The range is empty or too long: showing the last 30 days."
        start = end = None
        until, since = now, now - timedelta(days=DEFAULT_DAYS)
    kept = {
        name: moment.date().isoformat()
        for name, moment in (("start", start), ("end", end))
        if moment is not None
    }
    shown = {"start": since.date().isoformat(), "end": kept.get("end", "")}
    return Period(since, until), shown, f"?{urlencode(kept)}" if kept else "", problem


def _day(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)


def _context(request: Request, **more: Any) -> dict[str, Any]:
    period, shown, suffix, problem = _range(request)
    return {
        "period": period,
        "shown": shown,
        "suffix": suffix,
        "problem": problem,
        "signed_in": True,
        **more,
    }


# Charts' figures (plotly.js traces and layouts) ----------------------------------------------
def _funnel(report: dict) -> dict:
    stages = reports.funnel_stages(report)
    return {
        "data": [
            {
                "type": "funnel",
                "y": [label for label, _ in stages],
                "x": [n for _, n in stages],
                "textinfo": "value+percent initial",
            }
        ],
        "layout": {
            "margin": {"l": 170, "r": 20, "t": 10, "b": 30},
            "height": 60 + 40 * len(stages),
        },
    }


def _outcomes(report: dict) -> dict:
    outcomes = {"active": report["active"], **report["completed"]}
    return {
        "data": [{"type": "bar", "x": list(outcomes), "y": list(outcomes.values())}],
        "layout": {"margin": {"l": 40, "r": 10, "t": 10, "b": 40}, "height": 220},
    }


def _trend(days: list[dict]) -> dict:
    x = [d["day"] for d in days]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": name,
                "x": x,
                "y": [d[name] for d in days],
            }
            for name in ("entered", "sent", "converted")
        ],
        "layout": {"margin": {"l": 40, "r": 10, "t": 10, "b": 40}, "height": 280},
    }


def _active_by_step(report: dict) -> dict:
    steps = report["active_by_step"]
    return {
        "data": [{"type": "bar", "x": list(steps), "y": list(steps.values())}],
        "layout": {"margin": {"l": 40, "r": 10, "t": 10, "b": 60}, "height": 240},
    }


def _arms(experiment: dict) -> dict:
    arms = experiment["arms"]
    rates = [a["conversion_rate"] or 0 for a in arms.values()]
    intervals = [a["interval_95"] or (0, 0) for a in arms.values()]
    return {
        "data": [
            {
                "type": "bar",
                "x": list(arms),
                "y": rates,
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": [max(0, hi - r) for r, (_, hi) in zip(rates, intervals, strict=True)],
                    "arrayminus": [
                        max(0, r - lo) for r, (lo, _) in zip(rates, intervals, strict=True)
                    ],
                },
            }
        ],
        "layout": {
            "margin": {"l": 50, "r": 10, "t": 10, "b": 40},
            "height": 240,
            "yaxis": {"tickformat": ".0%"},
        },
    }


# Pages ---------------------------------------------------------------------------------------
@router.get("")
def journeys(request: Request, settings: SettingsDep) -> Response:
    if actor_of(request, settings) is None:
        return _to_login()
    context = _context(request)
    engine = request.app.state.engine
    coded = coded_keys()
    rows = []
    for summary in reports.journeys_summary(engine, context["period"]):
        report = reports.journey_report(engine, summary["journey"], context["period"])
        rows.append(
            {
                **summary,
                "kind": "coded" if summary["journey"] in coded else "defined",
                "charts": {"funnel": _funnel(report), "outcomes": _outcomes(report)},
            }
        )
    return _page("journeys.html", title="Journeys", journeys=rows, **context)


@router.get("/journeys/{key}")
def journey(key: str, request: Request, settings: SettingsDep) -> Response:
    if actor_of(request, settings) is None:
        return _to_login()
    context = _context(request)
    if not KEY.match(key):
        return _page("missing.html", 404, title="Not found", what="journey", **context)
    engine, period = request.app.state.engine, context["period"]
    report = reports.journey_report(engine, key, period, by_day=True)
    experiments = [
        reports.experiment_report(engine, key, node, period)
        for node in reports.experiment_nodes(engine, key, period)
    ]
    charts = {
        "funnel": _funnel(report),
        "outcomes": _outcomes(report),
        "active": _active_by_step(report),
        "trend": _trend(report["days"]),
        **{f"arms-{e['node']}": _arms(e) for e in experiments},
    }
    return _page(
        "journey.html",
        title=f"Journey {key}",
        key=key,
        report=report,
        messages=reports.messages_report(engine, period, journey=key),
        experiments=experiments,
        charts=charts,
        **context,
    )


@router.get("/leads")
def find_lead(request: Request, settings: SettingsDep) -> Response:
    """The header's "open a lead" form (an id: nothing else of a lead goes in a URL)."""
    if actor_of(request, settings) is None:
        return _to_login()
    lead_id = (request.query_params.get("id") or "").strip()
    if not LEAD_ID.match(lead_id):
        return _page("missing.html", 404, title="Not found", what="lead", **_context(request))
    return RedirectResponse(f"/dashboard/leads/{lead_id}", status.HTTP_303_SEE_OTHER)


@router.get("/leads/{lead_id}")
def lead(lead_id: str, request: Request, settings: SettingsDep) -> Response:
    actor = actor_of(request, settings)
    if actor is None:
        return _to_login()
    context = _context(request)
    engine = request.app.state.engine
    header = lead_header(engine, lead_id) if LEAD_ID.match(lead_id) else None
    if header is None:
        return _page("missing.html", 404, title="Not found", what="lead", **context)
    cursor = request.query_params.get("cursor")
    try:
        page = timeline(engine, lead_id, limit=100, cursor=cursor)
    except BadCursor:
        page = timeline(engine, lead_id, limit=100)
    with Session(engine) as session:  # reading a lead's timeline is audited, here as in the API
        privacy.record_read(session=session, lead_id=lead_id, actor=actor, action=audit.TIMELINE)
    return _page(
        "lead.html",
        title=f"Lead {lead_id}",
        lead=header,
        entries=[_entry(e) for e in page["entries"]],
        next_cursor=page["next_cursor"],
        **context,
    )


SHOWN = (
    "journey",
    "step",
    "template",
    "channel",
    "status",
    "outcome",
    "goal",
    "reason",
    "event",
    "points",
    "purpose",
    "list",
    "kind",
    "url",
    "score",
    "threshold",
)


def _entry(entry: dict) -> dict:
    if "machine" in entry:
        who = (
            f"machine ({entry.get('machine_reason') or 'unknown'})" if entry["machine"] else "human"
        )
    else:
        who = ""
    details = [(k, entry[k]) for k in SHOWN if entry.get(k) not in (None, "", [])]
    return {"at": entry["at"], "type": entry["type"], "who": who, "details": details}
