"""Turn a message template into what is sent: subject, HTML and text for email, a body for SMS,
a subject and a body for a webhook message (``templates/webhook/``, blocks ``subject`` and
``body``).

A template is one Jinja2 file per message under ``templates/email/`` (blocks ``subject``,
``html`` and ``text``) or ``templates/sms/`` (the whole file is the body). After rendering,
the web links the template itself wrote are rewritten to signed click-redirect URLs, and the
HTML gets a tracking pixel. Links to Relance itself (unsubscribe, the preference page
``preferences_url``, the double opt-in ``confirm_url``) are left as they are.

Lead data is rendered, never executed:

- Only links written in templates are tracked: template text, ``site_url``, and values the
  template marks as links with the ``link`` filter (``{{ item.url | link }}``, a product URL
  given by the shop). Any other value a ``{{ ... }}`` prints (a name, a cart item's name, an
  event's speaker) is text: a ``first_name`` of ``https://evil.example/login`` shows as written
  and never becomes a signed redirect on the tracking domain.
- Only the HTML part is HTML-escaped; subjects, text parts and SMS read as the lead wrote it
  ("Seán O'Brien & Co"). In every part a value's control characters (CR, LF, tab, NUL...) become
  spaces: a stored name cannot add a header or break a subject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    ChainableUndefined,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateSyntaxError,
    meta,
    pass_context,
)
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

from relance.domain.tokens import TokenSigner, TrackingToken, is_web_url

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"

_HREF = re.compile(r'(href\s*=\s*)(["\'])(https?://[^"\']+)\2', re.IGNORECASE)
_TEXT_URL = re.compile(r"https?://[^\s<>\"')\]]+")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")

# While a message renders, each value a ``{{ ... }}`` prints stands in the output as a slot
# (private-use characters, which no URL pattern matches and HTML escaping leaves alone); links
# are tracked on that output, then the slots are filled. A value can thus never form, extend or
# be mistaken for a link the template wrote.
_SLOT_OPEN, _SLOT_CLOSE = "\ue000", "\ue001"
_SLOT = re.compile(f"{_SLOT_OPEN}(\\d+){_SLOT_CLOSE}")
_SLOTS_VAR = "_relance_rendered_values"


class TemplateLink(str):
    """A URL a template links to (``site_url``, a value through the ``link`` filter): tracked."""


def one_line(value: Any) -> str:
    """A value as safe text for a subject, a header or a line: control characters become spaces."""
    return _CONTROL.sub(" ", str(value))


def header_text(value: Any) -> str:
    """A value for an email header (a subject, a display name): one line, spaces collapsed."""
    return " ".join(one_line(value).split())


class _Values:
    """The values printed by one rendering, kept out of the output until its links are tracked."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def slot(self, text: str) -> str:
        self.values.append(text)
        return f"{_SLOT_OPEN}{len(self.values) - 1}{_SLOT_CLOSE}"

    def fill(self, rendered: str) -> str:
        return _SLOT.sub(lambda m: self.values[int(m.group(1))], rendered)


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    """Every ``{{ ... }}`` output passes here: template links stay in the output, anything else
    is text (escaped in HTML, control characters as spaces) put in a slot."""
    if isinstance(value, TemplateLink):
        return TemplateLink(one_line(value))
    values = context.get(_SLOTS_VAR)
    text = one_line(
        escape(value) if context.eval_ctx.autoescape else value
    )  # Markup stays as it is
    return values.slot(text) if values is not None else text


def _link(value: Any) -> Any:
    """``{{ url | link }}``: the template links to this value; tracked if it is a web URL."""
    return (
        TemplateLink(value)
        if isinstance(value, str) and is_web_url(value) and not _CONTROL.search(value)
        else value
    )


def _environment(templates_dir: Path, *, html: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(templates_dir)),
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters["link"] = _link
    return env


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
    def __init__(
        self, signer: TokenSigner, public_base_url: str, templates_dir: Path = TEMPLATES_DIR
    ):
        self.signer = signer
        self.base = public_base_url.rstrip("/")
        self.templates_dir = templates_dir
        self._variables: dict[str, frozenset[str]] = {}  # see _uses
        # One file, two compilations: the html block escapes what it prints, the subject, text
        # and SMS do not (they are not HTML).
        self.html_env = _environment(templates_dir, html=True)
        self.text_env = _environment(templates_dir, html=False)

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

    def preferences_url(self, tracking: Tracking) -> str:
        """The hosted preference page (GET /p/{token}): topics, pace, channels."""
        return f"{self.base}/p/{self._token('preferences', tracking)}"

    def confirm_url(self, tracking: Tracking) -> str:
        """The double opt-in link (GET /confirm/{token}): its own kind of token, valid for days, not
        months."""
        return f"{self.base}/confirm/{self._token('confirm', tracking)}"

    def _tracked(self, url: str, tracking: Tracking, signed: dict[str, str] | None = None) -> str:
        """``signed``: the click links of this message so far, by destination (a link in both
        the HTML and the text part is signed once: the same token either way)."""
        if (
            _SLOT_OPEN in url
        ):  # a value is part of it: not a link the template wrote, left untracked
            return url
        if url.startswith(self.base + "/"):
            return url
        if signed is None:
            return self.click_url(tracking, url)
        if url not in signed:
            signed[url] = self.click_url(tracking, url)
        return signed[url]

    def _track_text(
        self, rendered: str, tracking: Tracking, signed: dict[str, str] | None = None
    ) -> str:
        return _TEXT_URL.sub(lambda m: self._tracked(m.group(0), tracking, signed), rendered)

    def _uses(self, name: str) -> frozenset[str]:
        """The variables the template ``name`` and the files it includes read (read once)."""
        uses = self._variables.get(name)
        if uses is None:
            uses = self._variables[name] = frozenset(template_variables(name, self.templates_dir))
        return uses

    # Messages -----------------------------------------------------------------------------
    def _context(self, context: dict[str, Any]) -> dict[str, Any]:
        ctx = dict(context)
        if isinstance(ctx.get("site_url"), str):
            ctx["site_url"] = TemplateLink(ctx["site_url"])  # the brand's site, from the settings
        return ctx

    def blocks(
        self, env: Environment, template: str, context: dict[str, Any], names: tuple[str, ...]
    ) -> dict[str, tuple[str, _Values]]:
        """Render these blocks of ``template``: each output with its values still in slots."""
        tmpl = env.get_template(template)
        out = {}
        for name in names:
            values = _Values()
            ctx = tmpl.new_context({**self._context(context), _SLOTS_VAR: values})
            out[name] = ("".join(tmpl.blocks[name](ctx)).strip(), values)
        return out

    def email(self, template: str, context: dict[str, Any], tracking: Tracking) -> RenderedEmail:
        name = f"email/{template}.jinja"
        unsubscribe_url = self.unsubscribe_url(tracking)  # the List-Unsubscribe header's
        # The preference and confirmation links are signed when the template shows them.
        uses = self._uses(name)
        context = {**context, "unsubscribe_url": TemplateLink(unsubscribe_url)}
        if "preferences_url" in uses:
            context["preferences_url"] = TemplateLink(self.preferences_url(tracking))
        if "confirm_url" in uses:
            context["confirm_url"] = TemplateLink(self.confirm_url(tracking))
        [(html, html_values)] = self.blocks(self.html_env, name, context, ("html",)).values()
        text_blocks = self.blocks(self.text_env, name, context, ("subject", "text"))

        signed: dict[str, str] = {}
        html = _HREF.sub(
            lambda m: (
                f"{m.group(1)}{m.group(2)}"
                f"{self._tracked(_unescape(m.group(3)), tracking, signed)}{m.group(2)}"
            ),
            html,
        )
        html = html_values.fill(html)
        pixel = (
            f'<img src="{self.pixel_url(tracking)}" width="1" height="1" alt="" '
            'style="display:block;border:0">'
        )
        html = html.replace("</body>", pixel + "</body>") if "</body>" in html else html + pixel
        text, text_values = text_blocks["text"]
        text = text_values.fill(self._track_text(text, tracking, signed))
        subject, subject_values = text_blocks["subject"]
        return RenderedEmail(
            subject=header_text(subject_values.fill(subject)),
            html=html,
            text=text + "\n",
            unsubscribe_url=unsubscribe_url,
        )

    def preview_email(self, template: str, context: dict[str, Any]) -> RenderedEmail:
        """The email as a lead would read it, without tracking: no pixel, links as the template
        wrote them, and the unsubscribe, preference and confirmation links pointing nowhere (a
        preview)."""
        name = f"email/{template}.jinja"
        placeholder = f"{self.base}/preview-has-no-links"
        context = {
            **context,
            "unsubscribe_url": TemplateLink(placeholder),
            "preferences_url": TemplateLink(placeholder),
            "confirm_url": TemplateLink(placeholder),
        }
        [(html, html_values)] = self.blocks(self.html_env, name, context, ("html",)).values()
        text_blocks = self.blocks(self.text_env, name, context, ("subject", "text"))
        text, text_values = text_blocks["text"]
        subject, subject_values = text_blocks["subject"]
        return RenderedEmail(
            subject=header_text(subject_values.fill(subject)),
            html=html_values.fill(html),
            text=text_values.fill(text) + "\n",
            unsubscribe_url=placeholder,
        )

    def plain_email(self, template: str, context: dict[str, Any]) -> tuple[str, str]:
        """An untracked text email (internal notices to staff): its subject and text."""
        rendered = self.blocks(
            self.text_env, f"email/{template}.jinja", context, ("subject", "text")
        )
        subject, text = (values.fill(output) for output, values in rendered.values())
        return header_text(subject), text + "\n"

    def text_blocks(
        self, path: str, context: dict[str, Any], tracking: Tracking, names: tuple[str, ...]
    ) -> dict[str, str]:
        """Blocks of a text template (a webhook message's ``subject`` and ``body``): not HTML, its
        links tracked, ``unsubscribe_url`` and ``preferences_url`` given. Whoever sends them
        serialises them (JSON), so a value cannot change the message's structure either."""
        unsubscribe_url = self.unsubscribe_url(tracking)
        context = {
            **context,
            "unsubscribe_url": TemplateLink(unsubscribe_url),
            "preferences_url": TemplateLink(self.preferences_url(tracking)),
        }
        return {
            name: values.fill(self._track_text(output, tracking))
            for name, (output, values) in self.blocks(self.text_env, path, context, names).items()
        }

    def sms(self, template: str, context: dict[str, Any], tracking: Tracking) -> str:
        tmpl = self.text_env.get_template(f"sms/{template}.txt")
        values = _Values()
        body = tmpl.render({**self._context(context), _SLOTS_VAR: values}).strip()
        return values.fill(self._track_text(body, tracking))


# What every message's template is given, whatever the message is about: the lead's and the
# brand's fields (activities/channels.py ``template_context``) and the links the renderer adds.
# Anything else comes from what the message is about (``SendRequest.about``: an event, a cart).
MESSAGE_VARIABLES = frozenset(
    {
        "first_name",
        "locale",
        "brand_name",
        "site_url",
        "unsubscribe_url",
        "preferences_url",
        "confirm_url",
    }
)


def template_variables(path: str, templates_dir: Path = TEMPLATES_DIR) -> set[str]:
    """The variables the template file ``path`` ("email/event_thanks.jinja"), and the files it
    includes, read without setting them: what its context must give (StrictUndefined: a
    missing one fails the rendering)."""
    env = _environment(templates_dir, html=False)
    names: set[str] = set()
    seen: set[str] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        source = env.loader.get_source(env, current)[0]
        tree = env.parse(source)
        names |= meta.find_undeclared_variables(tree)
        todo.extend(t for t in meta.find_referenced_templates(tree) if t)
    return names - {_SLOTS_VAR}


def _unescape(url: str) -> str:
    return url.replace("&amp;", "&")


# Inline templates of a definition (a task node's title and description) --------------------------
# A definition's author writes them, so they run in Jinja's sandbox (no attribute of Python
# objects beyond plain values), as text: what they print is the lead's data as written, one line
# for a title, and never evaluated again. A value the lead lacks prints as nothing.
INLINE_VARIABLES = frozenset(
    {"first_name", "country", "locale", "score", "attributes", "brand_name"}
)
_INLINE = ImmutableSandboxedEnvironment(
    autoescape=False, undefined=ChainableUndefined, finalize=lambda v: "" if v is None else v
)


def inline_problems(source: str) -> str:
    """What is wrong with an inline template ("" when nothing): its syntax, or a variable it
    reads that a task's template does not have."""
    try:
        tree = _INLINE.parse(source)
    except TemplateSyntaxError as err:
        return f"not a template: {err.message} (line {err.lineno})"
    unknown = meta.find_undeclared_variables(tree) - INLINE_VARIABLES
    if unknown:
        return (
            f"it reads {', '.join(sorted(unknown))}, which a task's template does not have "
            f"(it has {', '.join(sorted(INLINE_VARIABLES))})"
        )
    return ""


def render_inline(source: str, context: dict[str, Any], *, one_line_only: bool = False) -> str:
    """An inline template rendered in the sandbox with plain values (``context``)."""
    text = _INLINE.from_string(source).render(**context)
    return header_text(text) if one_line_only else text.strip()
