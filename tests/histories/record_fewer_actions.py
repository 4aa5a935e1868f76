"""Record, for each journey the ``fewer-actions`` patch changed, one path as journeys started
since run it (one read of the lead, only the steps a journey waits in searchable): the histories
``*_fewer_actions.json`` that tests/test_replay.py replays beside the older ones.

    .venv/bin/python -m tests.histories.record_fewer_actions

It runs the recording scripts that hold those paths into a scratch folder (RELANCE_RECORD_INTO)
with the send window open at every hour (the recordings do not depend on the hour they are made
at), and keeps the paths below under their new names; the older histories stay as they are.
Same rules as ``record.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
# The path kept, by the script that records it.
PATHS = {
    "record_double_opt_in": ["welcome_double_opt_in_opened_clicked"],
    "record": ["welcome_relanced_by_sms", "cart_three_reminders"],
    "record_together": ["welcome_send_window_capped", "browse_recommendation_sent"],
    "record_event": ["event_rescheduled_attended"],
    "record_nurturing": ["nurturing_downloaded_task_escalated"],
    "record_reengagement": ["reengage_clicked_after_email_2", "premium_offer_sent"],
    "record_outcomes": ["purchase_first_thank_you"],
    "record_definitions": ["defined_webinar_clicked"],
}
ALWAYS_OPEN = {
    "RELANCE_SEND_WINDOW_DAYS": "[1, 2, 3, 4, 5, 6, 7]",
    "RELANCE_SEND_WINDOW_START": "00:00",
    "RELANCE_SEND_WINDOW_END": "23:59",
}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, **ALWAYS_OPEN, "RELANCE_RECORD_INTO": tmp}
        for script, names in PATHS.items():
            subprocess.run(
                [sys.executable, "-m", f"tests.histories.{script}"], cwd=ROOT, env=env, check=True
            )
            for name in names:
                shutil.copy(Path(tmp) / f"{name}.json", HERE / f"{name}_fewer_actions.json")
                print(f"kept {name}_fewer_actions")


if __name__ == "__main__":
    main()
