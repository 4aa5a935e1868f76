"""Turn a message template into what is sent: subject, HTML and text for email, a body for SMS.

A template is one Jinja2 file per message under ``templates/email/`` (blocks ``subject``,
``html`` and ``text``) or ``templates/sms/`` (the whole file is the body). After rendering,
every web link is rewritten to a signed click-redirect URL, and the HTML gets a tracking pixel.
Links to Relance itself (unsubscribe, the double opt-in ``confirm_url``) are left as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from relance.tokens import TokenSigner, TrackingToken

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

_HREF = re.compile(r'(href\s*=\s*)(["\'])(https?://[^"\']+)\2', re.IGNORECASE)
_TEXT_URL = re.compile(r"https?://[^\s<>\"')\]]+")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str
    unsubscribe_url: str


@dataclass(frozen=True)
class Tracking:
    """Who the links in one message belong to."""

    message_id: str
    lead_id: str
    workflow_id: str


class Renderer:
    def __init__(self, signer: TokenSigner, public_base_url: str, templates_dir: Path = TEMPLATES_DIR):
        self.signer = signer
        self.base = public_base_url.rstrip("/")
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir)),
            autoescape=select_autoescape(enabled_extensions=("html", "jinja"), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    # Tracked URLs -------------------------------------------------------------------------
    def _token(self, kind: str, tracking: Tracking, url: str | None = None) -> str:
        return self.signer.sign(
            TrackingToken(kind, tracking.message_id, tracking.lead_id, tracking.workflow_id, url)
        )

    def click_url(self, tracking: Tracking, destination: str) -> str:
        return f"{self.base}/t/c/{self._token('click', tracking, destination)}"

    def pixel_url(self, tracking: Tracking) -> str:
        return f"{self.base}/t/o/{self._token('open', tracking)}"

    def unsubscribe_url(self, tracking: Tracking) -> str:
        return f"{self.base}/u/{self._token('unsubscribe', tracking)}"

    def confirm_url(self, tracking: Tracking) -> str:
        """The double opt-in link (GET /confirm/{token}): its own kind of token, valid for days, not months."""
        return f"{self.base}/confirm/{self._token('confirm', tracking)}"

    def _tracked(self, url: str, tracking: Tracking) -> str:
        return url if url.startswith(self.base + "/") else self.click_url(tracking, url)

    # Messages -----------------------------------------------------------------------------
    def email(self, template: str, context: dict[str, Any], tracking: Tracking) -> RenderedEmail:
        tmpl = self.env.get_template(f"email/{template}.jinja")
        unsubscribe_url = self.unsubscribe_url(tracking)
        ctx = tmpl.new_context({**context, "unsubscribe_url": unsubscribe_url, "confirm_url": self.confirm_url(tracking)})

        def block(name: str) -> str:
            return "".join(tmpl.blocks[name](ctx)).strip()

        html = _HREF.sub(
            lambda m: f"{m.group(1)}{m.group(2)}{self._tracked(_unescape(m.group(3)), tracking)}{m.group(2)}",
            block("html"),
        )
        pixel = f'<img src="{self.pixel_url(tracking)}" width="1" height="1" alt="" style="display:block;border:0">'
        html = html.replace("</body>", pixel + "</body>") if "</body>" in html else html + pixel
        text = _TEXT_URL.sub(lambda m: self._tracked(m.group(0), tracking), block("text"))
        subject = " ".join(block("subject").split())
        return RenderedEmail(subject=subject, html=html, text=text + "\n", unsubscribe_url=unsubscribe_url)

    def sms(self, template: str, context: dict[str, Any], tracking: Tracking) -> str:
        body = self.env.get_template(f"sms/{template}.txt").render(context).strip()
        return _TEXT_URL.sub(lambda m: self._tracked(m.group(0), tracking), body)


def _unescape(url: str) -> str:
    return url.replace("&amp;", "&")
