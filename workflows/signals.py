"""What the tracking endpoints tell a journey. Ids only: no address, no user agent."""

from dataclasses import dataclass

OPENED = "opened"
CLICKED = "clicked"
UNSUBSCRIBED = "unsubscribed"


@dataclass
class TrackingSignal:
    message_id: str
    url: str | None = None  # the destination, for clicks
