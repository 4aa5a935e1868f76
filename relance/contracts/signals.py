"""What the tracking endpoints tell a journey. Ids only: no address, no user agent."""

from dataclasses import dataclass

OPENED = "opened"
CLICKED = "clicked"
UNSUBSCRIBED = "unsubscribed"
# Double opt-in: the lead clicked the confirmation link (GET /confirm/{token}); ``message_id`` is
# the confirmation email's. Delivered through the outbox like the tracking hits.
EMAIL_CONFIRMED = "email_confirmed"


@dataclass
class TrackingSignal:
    message_id: str
    url: str | None = None  # the destination, for clicks


# What the shop tells a cart journey (POST /events/track).
CART_UPDATED = "cart_updated"
PURCHASED = "purchased"


@dataclass
class CartSignal:
    cart_id: str
    item_count: int  # 0: the cart was emptied


@dataclass
class PurchaseSignal:
    order_id: str


# What the events API tells an event journey (ids only, no payload to trust: the journey re-reads).
EVENT_CHANGED = "event_changed"  # rescheduled or cancelled: re-read the schedule
ATTENDED = "attended"  # the lead was at the event

# What the API tells a re-engagement journey about activity outside its own emails
# (a page view, a purchase, an open or click of another journey's message).
ACTIVITY = "activity"


@dataclass
class ActivitySignal:
    kind: str  # page_view | purchase | opened | clicked | form


# What the API tells a nurturing journey (``nurture-<lead id>``): ids and names only.
ASSET_DOWNLOADED = "asset_downloaded"  # POST /events/track {"type": "asset_downloaded"}
DEMO_BOOKED = "demo_booked"  # POST /events/track {"type": "demo_booked"}: goal reached
TASK_COMPLETED = "task_completed"  # POST /tasks/{id}/complete
SCORE_CHANGED = "score_changed"  # the lead's score changed elsewhere


@dataclass
class AssetSignal:
    asset: str  # e.g. "white-paper"


@dataclass
class TaskSignal:
    task_id: str
    outcome: str  # called | meeting_booked | not_interested


@dataclass
class ScoreSignal:
    score: int


# Goals: a journey declares the goals it works towards (its module's ``GOALS``). When
# the lead reaches one, from the API (a purchase, a demo booked) or another journey, every running
# journey of the lead that declares it gets ``goal_reached`` and ends as converted, wherever it is.
GOAL_REACHED = "goal_reached"
PURCHASE_GOAL = "purchase"
DEMO_BOOKED_GOAL = "demo_booked"


@dataclass
class GoalSignal:
    goal: str  # purchase | demo_booked | ...
    source: str  # who reached it: "api:purchase", "journey:nurture-<lead id>", ...


# Browse abandonment: a page view with a category, for the lead's ``browse-<lead id>`` journey.
PAGE_VIEWED = "page_viewed"


@dataclass
class PageViewSignal:
    category: str  # e.g. an author, "stephen-king"
