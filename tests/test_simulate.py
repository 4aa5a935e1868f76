"""``python -m relance journeys simulate``: the real interpreter on a time-skipping server of its
own, the real worker and activities, a throwaway database and a local mail sink, driven by a
script of what the lead does; what it prints is the lead's timeline (relance/dev/simulate.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

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
    """A registrant who missed the webinar, registered on a Monday night: the replay is due
    Tuesday night and held for Wednesday's send window, a click on it, then a trial started:
    converted. Weeks of journey in seconds."""
    run = simulate(WEBINAR, "--lead", LEAD, "--events", SCRIPT, "--start", "mon 22:00")
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


def test_the_start_decides_whether_the_send_window_holds_a_message():
    """The same registrant entering on a Tuesday morning: the replay is due on Wednesday morning,
    inside the window, and goes at once; the timeline starts at the asked local time."""
    run = simulate(WEBINAR, "--lead", LEAD, "--events", SCRIPT, "--start", "tue 10:00", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    timeline = json.loads(run.stdout)
    started = datetime.fromisoformat(timeline["started_at"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (started.weekday(), started.hour, started.minute) == (1, 10, 0)
    texts = [e["text"] for e in timeline["entries"]]
    assert "replay: webinar_replay by email: sent" in texts
    assert not any("held until the send window opens" in text for text in texts)


@pytest.mark.parametrize("start", ["25:00", "someday 10:00", "tomorrow"])
def test_a_start_that_is_not_a_time_is_refused_before_anything_runs(start):
    run = simulate(WEBINAR, "--lead", LEAD, "--events", SCRIPT, "--start", start)
    assert run.returncode == 1
    assert run.stdout.startswith("cannot simulate: --start")


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
    assert "events.0: an event is exactly one of open, click, event, download, goal" in run.stdout


async def test_a_journey_stuck_on_a_send_is_reported_with_its_failure_not_waited_for():
    """A message whose template needs an event (the check refuses it: this one is not checked)
    fails at every attempt; the simulation stops and says why instead of hanging."""
    definition = parse(
        {
            "key": "stuck",
            "name": "an event's reminder with no event",
            "topic": "newsletter",
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


def test_the_birthday_journey_simulated_sends_the_code_then_the_reminder(tmp_path):
    """Nobody uses the birthday code: the email, three days, the condition's reason (not
    redeemed), the reminder with the same code."""
    lead = tmp_path / "lead.json"
    lead.write_text(json.dumps({"email": "grace@example.com", "first_name": "Grace"}))
    run = simulate(Path(__file__).parents[1] / "config/journeys/birthday.yaml", "--lead", lead)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "birthday_email: birthday by email: sent" in out
    assert "used: promo code of birthday_email redeemed: no (not redeemed) -> else" in out
    assert "reminder: birthday_reminder by email: sent" in out
    assert "2 message(s) sent" in out
    lines = out.splitlines()

    def at(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    assert at("birthday by email: sent") < at("waits (3d)") < at("used: ") < at("reminder: bir")


def test_the_renewal_reminder_simulated_shows_the_switch_the_attribute_set_and_the_dates(
    tmp_path,
):
    """A pro lead renewing in 100 days or so: the switch's second case, the case study 60 days
    before at 09:00, the reminder 30 days before. A lead with no plan and no renewal date: the
    default, the plan set, the delay that says it goes on at once, the reminder."""
    renewal = DEFINITIONS / "renewal.yaml"
    pro = tmp_path / "pro.json"
    day = (datetime.now(UTC) + timedelta(days=100)).date()
    while {(day - timedelta(days=d)).isoweekday() for d in (30, 60)} & {6, 7}:
        day += timedelta(days=1)  # both moments on weekdays: the send window holds neither
    pro.write_text(json.dumps({"attributes": {"plan": "pro", "renewal_date": day.isoformat()}}))
    run = simulate(renewal, "--lead", pro)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert (
        "plan: case 1: plan eq free: no; case 2: plan in ['pro', 'enterprise']: yes -> case 2"
        in out
    )
    assert "sixty_days: waits (until renewal_date -60 d at 09:00 in the lead's time zone)" in out
    sixty, thirty = (f"{day - timedelta(days=d):%Y-%m-%d} 09:00" for d in (60, 30))
    assert f"{sixty}  case_study: nurture_case_study by email: sent" in out, out
    assert f"{thirty}  reminder: nurture_promotional_offer by email: sent" in out, out

    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"email": "nobody@example.com"}))
    run = simulate(renewal, "--lead", unknown)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "-> default" in out
    assert "starter: plan set to 'starter'" in out
    assert "thirty_days: goes on: no renewal_date for the lead -> next" in out
    assert "1 message(s) sent: reminder (nurture_promotional_offer, email)" in out


def test_a_download_a_webhook_and_a_task_show_in_the_timeline(tmp_path):
    """The webinar-to-sales hand-off: no attendance, the white paper, a download the script plays
    a day later; the CRM call (no endpoint configured in a simulation: its failure branch) and
    the sales task are in the timeline with what happened."""
    script = tmp_path / "downloaded.json"
    script.write_text(json.dumps({"events": [{"after": "8d", "download": "white-paper"}]}))
    run = simulate(DEFINITIONS / "webinar_to_sales.yaml", "--events", script)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "script: the lead downloads white-paper: passed to the journey" in out
    assert "downloaded: a download of white-paper came -> then" in out
    assert "enrich: crm failed: no endpoint 'crm' is configured" in out
    assert "call: task " in out
    assert "the journey ends: exited" in out


def test_a_scripted_crm_answer_takes_the_webhook_s_success_branch_and_fills_the_task(tmp_path):
    """The script answers the CRM endpoint: the worker's real call gets it, the mapped values
    become the lead's attributes, and the sales task's title reads them. A 4xx takes the failure
    branch; an answer for an endpoint no node calls is refused before anything runs."""
    answer = {"company": {"employees": 120}, "account": {"plan": "pro"}}
    download = {"after": "8d", "download": "white-paper"}
    script = tmp_path / "crm.json"
    script.write_text(
        json.dumps({"events": [download], "webhooks": {"crm": {"status": 200, "body": answer}}})
    )
    run = simulate(DEFINITIONS / "webinar_to_sales.yaml", "--events", script)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "enrich: crm accepted: 200: company_size, plan set -> next" in run.stdout
    assert 'call: task "Call Ada (pro)"' in run.stdout

    script.write_text(json.dumps({"events": [download], "webhooks": {"crm": {"status": 404}}}))
    run = simulate(DEFINITIONS / "webinar_to_sales.yaml", "--events", script)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "enrich: crm failed: the crm endpoint refused: 404 -> on_failure" in run.stdout
    assert 'call: task "Call Ada (no plan)"' in run.stdout

    script.write_text(json.dumps({"webhooks": {"crn": {"status": 200}}}))
    run = simulate(DEFINITIONS / "webinar_to_sales.yaml", "--events", script)
    assert run.returncode == 1
    assert "answers the webhook endpoint(s) crn, which no node of webinar_to_sales calls" in (
        run.stdout + run.stderr
    )
