"""All of Relance's configuration, in one place.

Every field can be set by an environment variable named ``RELANCE_<FIELD>`` (upper case) or in a
``.env`` file in the working directory. ``make run`` writes a ``.env`` with a generated API key and
secret key on first start.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relance.domain.journey_rules import JourneyRules
from relance.domain.lead_schema import LeadSchema, lead_schema_from
from relance.domain.scoring_rules import ScoringRules, rules_from
from relance.domain.send_window import SendWindow
from relance.domain.topics import DEFAULT_TOPICS_FILE, Topics, topics_from


class SalesRep(BaseModel):
    """A sales rep who takes hand-off tasks (``RELANCE_SALES_REPS``, a JSON list of these)."""

    email: str = Field(min_length=3, max_length=320)
    name: str = Field(default="", max_length=200)
    countries: list[str] = Field(
        default_factory=list, description="ISO 3166 alpha-2 codes: the rep's territory"
    )


class JourneyWebhook(BaseModel):
    """An endpoint a defined journey's webhook node may call, by its name
    (``RELANCE_JOURNEY_WEBHOOKS``, a JSON object name -> this): a definition names one of these,
    never a URL, so no definition makes the worker call an address the operators did not set."""

    url: str = Field(pattern=r"^https?://", max_length=2000)
    secret: str = Field(default="", description="the HMAC key; empty: the secret key")
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RELANCE_", env_file=".env", extra="ignore")

    # Where local state lives (SQLite files, dev server database).
    data_dir: Path = Path("var")
    # SQLAlchemy URL of the app database. SQLite by default; PostgreSQL in production, e.g.
    # postgresql+psycopg://relance:relance@db:5432/relance
    database_url: str = "sqlite:///var/relance.db"

    # Temporal
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "relance"
    temporal_ui_port: int = 8233
    # Worker: journeys kept in memory between their steps (the SDK's sticky cache; its default,
    # 1,000, took the worker to 450 MB). A journey out of the cache replays its short history when
    # its next timer or signal arrives; a bigger cache saves that replay and costs ~0.3 MB a
    # journey it holds (docs/benchmarks.md).
    worker_max_cached_workflows: int = Field(default=200, ge=0)

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # The address leads' browsers and mail clients use to reach the tracking endpoints.
    public_base_url: str = "http://localhost:8000"
    # Request bodies over this size are refused with a 413 on every route, public or not, before
    # they are read whole; the CSV import (POST /leads/import) takes files up to its own limit.
    max_request_bytes: int = Field(default=4 * 2**20, ge=64 * 1024)
    import_max_bytes: int = Field(default=10 * 2**20, ge=64 * 1024)
    # Management endpoints require this in the X-API-Key header. Empty: they refuse everything.
    api_key: str = ""
    # Signs tracking, click and unsubscribe tokens. Keep it secret; rotate it and old links die.
    secret_key: str = ""
    # Keys the suppression list's address hashes (erased and unsubscribed addresses). Empty: the
    # secret key. Entries hashed under another key no longer match, so before rotating the secret
    # key, set this to the secret key's current value and keep it.
    suppression_key: str = ""
    tracking_token_max_age_days: int = 180
    # An open or click this soon after its link was signed (the message rendered and sent) is a
    # machine's: nobody reads that fast (relance/domain/engagement.py). 0 turns the rule off.
    tracking_machine_seconds: float = Field(default=2.0, ge=0, le=600)
    # The tracking outbox (relance/services/outbox.py). A journey is told one open per message and
    # one click per message and destination; however many hits a link gets, they are kept for
    # reporting, not signalled again. On top of that, each journey gets at most this many open and
    # click signals (Temporal refuses a workflow's 10,001st signal; each signal adds ~3 events to
    # its history, which is replayed whenever the journey leaves the worker's cache): beyond it,
    # hits are kept with the reason in their delivery_note, and the API logs it once.
    tracking_signals_per_journey: int = Field(default=200, ge=1, le=5000)
    # A journey that refuses a signal (not Temporal being down: a refusal for that journey only) is
    # left alone while the others are served, retried after 1 s, 2 s, 4 s... (at most this long
    # apart), and after this many attempts the hit is kept as not signalled, with Temporal's reason.
    tracking_signal_max_attempts: int = Field(default=8, ge=1)
    tracking_signal_retry_max_seconds: float = Field(default=300.0, gt=0)
    # Delivery is a stream: a stored hit waits at most this long before the outbox claims it
    # (sooner when a batch's worth is waiting), so its journey hears of it within a fraction of a
    # second even while a campaign's opens keep coming.
    tracking_delivery_max_delay_seconds: float = Field(default=0.2, ge=0, le=5)
    # How many journeys each API process's outbox signals at once (one signal in flight per
    # journey: a journey's hits go in order; each journey is stamped as soon as it is settled).
    # Under a stream the outbox keeps this many signals in flight, so what it sustains is this
    # many ÷ the server's time to take one signal: the raw SDK's best here came with 100 in
    # flight, and 64 held the outbox to 0.6× of it, every slot busy; 128 reached 0.81× in the
    # same run (docs/benchmarks.md, `python -m bench outbox --outbox-concurrency 64,128`). It
    # multiplies with the API processes: N of them on one database keep up to N × this many
    # signals in flight against one Temporal server. Lower it if signals time out there (the
    # outbox then backs off as if Temporal were down); a cluster takes more.
    tracking_delivery_concurrency: int = Field(default=128, ge=1, le=1000)
    # Temporal payload encryption (relance/domain/encryption.py): JSON {key id: base64 of 32 bytes},
    # and the id of the key that encrypts; every key listed still decrypts (rotation). `make run`
    # generates one; production must set them (python -m relance.domain.encryption prints a new
    # key).
    payload_keys: dict[str, str] = {}
    payload_key_id: str = ""
    # Browser origins allowed to call the codec endpoint (/codec/decode): the Temporal UI's.
    codec_cors_origins: list[str] = ["http://localhost:8233", "http://127.0.0.1:8233"]

    # Email (SMTP). In dev the local mail sink listens on smtp_port.
    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10.0
    # Each process reuses its SMTP connections (relance/services/smtp.py); one is retired after
    # this many messages, or when older than this (servers close idle connections after a minute
    # or a few: a kept one found closed is replaced before the message goes out).
    smtp_connection_max_messages: int = 100
    smtp_connection_max_age_seconds: float = 60.0
    mail_from: str = "Relance <hello@relance.localhost>"
    # What templates call the sender, and the website their links point to.
    brand_name: str = "Relance"
    site_url: str = "https://example.com"
    mail_domain: str = "relance.localhost"
    # Offered in List-Unsubscribe beside the one-click link. Relance reads no mailbox: mail sent
    # there is processed only if someone reads it. Empty: no mailto is offered.
    unsubscribe_mailto: str = "unsubscribe@relance.localhost"

    # SMS provider: JSON over HTTP (see activities/sms.py). In dev the mail sink also takes SMS.
    sms_provider_url: str = "http://localhost:8025/sms"
    sms_api_token: str = ""
    sms_sender: str = "Relance"
    # Webhook channel (activities/webhook.py): each message a signed JSON POST to this receiver (a
    # WhatsApp or push gateway, a Zapier-like automation), headers X-Relance-Timestamp and
    # X-Relance-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>"> with the secret (empty:
    # the secret key). Empty URL: the channel is off, its sends are recorded skipped.
    webhook_url: str = ""
    webhook_secret: str = ""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Defined journeys' webhook nodes (relance/domain/definitions.py ``Webhook``): the endpoints
    # they may call, by name, each signed as the webhook channel signs (its secret, else the
    # secret key), e.g. {"enrich": {"url": "https://crm.example.com/hooks/relance"}}.
    journey_webhooks: dict[str, JourneyWebhook] = Field(default_factory=dict)
    # Region used to read phone numbers written without a +country prefix.
    default_phone_region: str = "FR"

    # Dev mail sink (make run): SMTP port is smtp_port, the inbox page is on this port.
    mailsink_http_port: int = 8025

    # Double opt-in: a sign-up's new email consent is "pending" until the lead clicks the
    # signed link of a confirmation email (GET /confirm/{token}); the welcome journey sends it and
    # waits this long, then ends without any marketing email. The link is valid as long (plus an
    # hour's margin). A CSV import carries its own consent evidence: it is never asked to confirm.
    double_opt_in: bool = True
    double_opt_in_hours: float = Field(default=48.0, gt=0, le=24 * 30)

    def confirm_link_max_age_seconds(self) -> int:
        return int(self.double_opt_in_hours * 3600) + 3600

    # Welcome journey
    welcome_relance_after_hours: float = 48.0
    welcome_relance_by_sms: bool = True
    # The relance's channels, best first (relance/contracts/channels.py), e.g. ["webhook", "sms",
    # "email"]: the first the lead accepts. Empty: SMS then email (email only without
    # welcome_relance_by_sms).
    welcome_relance_channels: list[str] = []
    welcome_engagement_window_days: float = 7.0

    # Abandoned cart: hours of inactivity before each reminder (each counted from the previous
    # reminder, the clock restarting at every cart update), and the last reminder's incentive.
    cart_reminder_delays_hours: list[float] = [1.0, 24.0, 72.0]
    cart_last_reminder_percent_off: int = 10  # 0: no promo code
    # Purchases: a first purchase gets a thank-you with a code for the next order; a repeat
    # purchase puts the lead on this list.
    first_purchase_percent_off: int = 10
    loyal_customers_list: str = "loyal-customers"
    # Event journey: the hour-before reminder by SMS when the lead has a phone and SMS consent
    event_reminder_by_sms: bool = True

    # Re-engagement: a daily sweep starts the journey for leads inactive this long.
    reengagement_inactive_days: int = Field(default=60, ge=1)
    # Days after email 1 before email 2, after email 2 before email 3, after email 3 before the
    # sunset.
    reengagement_delays_days: list[float] = [7.0, 7.0, 7.0]

    @field_validator("reengagement_delays_days")
    @classmethod
    def _three_delays(cls, value: list[float]) -> list[float]:
        if len(value) != 3 or any(d <= 0 for d in value):
            raise ValueError(
                "three positive delays in days: after email 1, after email 2, after email 3"
            )
        return value

    # No reaction to the 3 emails: "suppress" (marketing email consent withdrawn, reason "sunset",
    # lead kept) or "delete" (the lead is erased as for a GDPR request).
    reengagement_sunset: Literal["suppress", "delete"] = "suppress"
    reengagement_batch_size: int = Field(
        default=500, ge=1, le=10_000
    )  # leads per page of the sweep (one activity each)
    # When the daily sweep runs (a Temporal Schedule, UTC); the schedule is created or updated at
    # worker start.
    reengagement_schedule_hour: int = Field(default=6, ge=0, le=23)
    reengagement_schedule_minute: int = Field(default=0, ge=0, le=59)
    reengagement_schedule_enabled: bool = True
    # Very active leads: this many clicks, page views, forms and purchases within the window get
    # the premium-content offer, once per lead ever (0: never).
    premium_offer_threshold: int = 20
    premium_offer_window_days: int = 30
    # Lead nurturing: the content sequence is a YAML file, read at worker start and at
    # each enrollment; a running journey keeps the sequence it was enrolled with.
    nurturing_sequence_file: Path = (
        Path(__file__).resolve().parents[2] / "config" / "nurturing.yaml"
    )
    # Journeys written as data kept in files (relance/services/journey_store.py): each *.yaml
    # there is checked at API start and published when its content changed.
    journeys_dir: Path = Path(__file__).resolve().parents[2] / "config" / "journeys"
    # Sales hand-off tasks: reps as JSON, e.g.
    # RELANCE_SALES_REPS='[{"email": "ana@example.com", "name": "Ana", "countries": ["FR", "BE"]}]'
    sales_reps: list[SalesRep] = Field(default_factory=list)
    sales_manager_email: str = ""  # overdue tasks are escalated to this address, once
    sales_task_due_business_days: int = Field(default=2, ge=1, le=30)
    sales_mail_from: str = ""  # internal emails to reps and the manager; empty: mail_from

    # Send windows: marketing sends go out only inside this window, in the lead's own
    # time zone (leads.time_zone); one due outside waits for the window to open. Days are ISO
    # (1 = Monday ... 7 = Sunday), hours "HH:MM" (end exclusive), holidays "YYYY-MM-DD" (local
    # dates). A journey may carry its own window. Transactional messages ignore it.
    send_window_enabled: bool = True
    send_window_days: list[int] = [1, 2, 3, 4, 5]
    send_window_start: str = "09:00"
    send_window_end: str = "19:00"
    send_window_holidays: list[str] = []
    # Frequency cap: at most this many marketing messages per lead and channel over the
    # rolling period, across every journey (0: no cap). Over the cap a send is deferred until the
    # cap allows it, or skipped, as the journey chooses.
    frequency_cap_messages: int = Field(default=3, ge=0)
    frequency_cap_days: float = Field(default=7.0, gt=0)
    # Broadcasts (workflows/broadcast.py): messages a batch sends at once, each over the process's
    # pooled SMTP connections.
    broadcast_send_concurrency: int = Field(default=4, ge=1, le=32)
    # Enrollment rules: a lead in this many journeys at once is not enrolled in another (0: no
    # limit).
    max_concurrent_journeys: int = Field(default=5, ge=0)
    # Re-enrollment (relance/domain/journey_rules.py): a journey that allows it takes a lead again
    # only this many days after the lead's previous run of it closed, unless the journey sets its
    # own cooldown.
    reenroll_cooldown_days: float = Field(default=30.0, ge=0, le=3650)
    # Per-journey rules over the catalogue's defaults (relance/contracts/catalogue.py), as JSON,
    # e.g. RELANCE_JOURNEY_RULES='{"nurturing": {"cooldown_days": 60, "exclude": ["customer",
    # "list:vip"]}}' (reenroll, cooldown_days, exclude; exclusions are checked at entry and before
    # each marketing send).
    journey_rules: dict[str, JourneyRules] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _window_can_open(self) -> Settings:
        self.send_window()
        return self

    def send_window(self) -> SendWindow | None:
        """The global send window (checked), or None when disabled."""
        if not self.send_window_enabled:
            return None
        window = SendWindow(
            days=list(self.send_window_days),
            start=self.send_window_start,
            end=self.send_window_end,
            holidays=list(self.send_window_holidays),
        )
        window.check()
        return window

    # Custom lead attributes and events (relance/domain/lead_schema.py), checked at worker and API
    # start; a missing file declares none.
    lead_schema_file: Path = Path(__file__).resolve().parents[2] / "config" / "lead_schema.yaml"

    # Scoring (relance/domain/scoring_rules.py): points per event, page and fit rule, and the decay,
    # in a YAML file checked at worker and API start.
    scoring_rules_file: Path = Path(__file__).resolve().parents[2] / "config" / "scoring.yaml"
    score_mql_threshold: int = Field(
        default=50, description="A lead at or above this score is a marketing-qualified lead"
    )
    # Segments: hot at or above segment_hot_score, warm at or above segment_warm_score, else cold.
    segment_hot_score: int = 50
    segment_warm_score: int = 20
    # The daily decay job (a Temporal Schedule, UTC), created or updated at worker start.
    score_decay_schedule_hour: int = Field(default=5, ge=0, le=23)
    score_decay_schedule_minute: int = Field(default=30, ge=0, le=59)
    score_decay_batch_size: int = Field(default=500, ge=1, le=10_000)
    # MQL notification (relance/services/mql.py): on each crossing of the threshold, a POST of a
    # JSON body signed with HMAC-SHA256 (header X-Relance-Signature: sha256=<hex>) to the CRM,
    # and/or an internal email to the sales address. Empty: that channel is off.
    mql_webhook_url: str = ""
    mql_webhook_secret: str = ""  # empty: signed with secret_key
    mql_notify_email: str = ""
    mql_retry_max_attempts: int = Field(default=8, ge=1, le=100)
    mql_retry_base_seconds: float = Field(default=5.0, gt=0)

    def lead_schema(self) -> LeadSchema:
        """The custom attributes and events in ``lead_schema_file``, re-read when it changes."""
        return lead_schema_from(self.lead_schema_file)

    # Topics (relance/domain/topics.py): what marketing messages are about, each with its default,
    # in a YAML file checked at worker and API start; leads choose on the preference page.
    topics_file: Path = DEFAULT_TOPICS_FILE

    def topics(self) -> Topics:
        """The topics in ``topics_file``, re-read when the file changes."""
        return topics_from(self.topics_file)

    def scoring_rules(self) -> ScoringRules:
        """The scoring rules in ``scoring_rules_file``, re-read when the file changes."""
        return rules_from(self.scoring_rules_file)

    @property
    def webhook_signing_secret(self) -> str:
        return self.webhook_secret or self.secret_key

    @property
    def suppression_hash_key(self) -> str:
        return self.suppression_key or self.secret_key

    @property
    def sqlite_path(self) -> Path | None:
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix):
            return Path(self.database_url[len(prefix) :])
        return None


@lru_cache
def get_settings() -> Settings:
    return Settings()
