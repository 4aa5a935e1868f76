"""``python -m relance journeys simulate``: the real interpreter on a time-skipping server of its
own, the real worker and activities, a throwaway database and a local mail sink, driven by a
script of what the lead does; what it prints is the lead's timeline (relance/dev/simulate.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from relance.dev.simulate import Profile, Script, Simulation, SimulationError
from relance.services.definitions import parse

DEFINITIONS = Path(__file__).parent / "definitions"
WEBINAR = DEFINITIONS / "webinar_replay.yaml"
LEAD = DEFINITIONS / "webinar_replay.lead.json"
SCRIPT = DEFINITIONS / "webinar_replay.script.json"


def simulate(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "relance", "journeys", "simulate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )


def test_the_example_prints_what_is_sent_when_the_branches_and_the_ending():
    """A registrant who missed the webinar: the replay (held for the send window), a click on
    it, then a trial started: converted. Weeks of journey in seconds."""
    run = simulate(WEBINAR, "--lead", LEAD, "--events", SCRIPT)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "attended: the signal webinar_attended did not come -> timeout" in out
    assert "replay: held until the send window opens" in out
    assert "replay: webinar_replay by email: sent" in out
    assert "replay_click: the clicked of replay came -> then" in out
    assert "watched: checkpoint replay_watched" in out
    assert "script: custom event trial_started" in out
    assert "the journey ends: converted (goal trial_started reached (converted))" in out
    assert "1 message(s) sent: replay (webinar_replay, email)" in out
    lines = out.splitlines()
    # the timeline is in simulated time order: the click (2 days in) before the trial (5 days)
    click = next(i for i, line in enumerate(lines) if "clicks in the message of replay" in line)
    trial = next(
        i for i, line in enumerate(lines) if "trial: the signal trial_started came" in line
    )
    assert click < trial and lines[trial].split()[0] == "+5d"


def test_json_an_attendee_gets_one_arm_of_the_experiment_and_a_fit_goes_to_sales(tmp_path):
    """An attendee with no trial afterwards: one thanks (the lead's arm, the same every run for
    the same lead), the checkpoint, the week's wait, the condition's reasons, the update."""
    script = tmp_path / "attended.json"
    script.write_text(
        json.dumps({"events": [{"after": "3h", "event": "webinar_attended", "properties": {}}]})
    )
    runs = [simulate(WEBINAR, "--lead", LEAD, "--events", script, "--json") for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stdout + runs[0].stderr
    first, again = (json.loads(r.stdout) for r in runs)
    arm = first["arms"]["thanks"]
    assert arm in ("slides", "demo") and again["arms"] == first["arms"]
    assert first["outcome"] == "exited" and first["checkpoints"] == ["attendee_thanked"]
    [sent] = first["messages"]
    assert (sent["step"], sent["template"], sent["status"]) == (
        f"thanks_{arm}:{arm}",
        f"webinar_thanks_{arm}",
        "sent",
    )
    texts = [e["text"] for e in first["entries"]]
    assert "trial: the signal trial_started did not come -> timeout" in texts
    assert (
        "fit: (score >= 20: yes (score 25) and not (in list do_not_call: no (not a member)))"
        " -> then" in texts
    )
    assert "hot: added to the list webinar_hot" in texts
    assert first["path"][-2:] == ["hot", "done"]


def test_a_script_event_that_does_nothing_is_refused_before_anything_runs(tmp_path):
    script = tmp_path / "bad.json"
    script.write_text(json.dumps({"events": [{"after": "2h"}]}))
    run = simulate(WEBINAR, "--lead", LEAD, "--events", script)
    assert run.returncode == 1
    assert "events.0: an event is exactly one of open, click, event, goal" in run.stdout


async def test_a_journey_stuck_on_a_send_is_reported_with_its_failure_not_waited_for():
    """A message whose template needs an event (the check refuses it: this one is not checked)
    fails at every attempt; the simulation stops and says why instead of hanging."""
    definition = parse(
        {
            "key": "stuck",
            "name": "an event's reminder with no event",
            "nodes": [
                {"id": "remind", "type": "message", "template": "event_reminder_day",
                 "next": "done"},
                {"id": "done", "type": "exit"},
            ],
        }
    )  # fmt: skip
    with pytest.raises(SimulationError) as raised:
        await Simulation(definition, Profile(), Script()).run()
    assert "stuck: its send_email activity failed" in str(raised.value)
    assert "'event' is undefined" in str(raised.value)
