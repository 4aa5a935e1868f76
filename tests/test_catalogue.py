"""The journey catalogue (relance/contracts/catalogue.py): every journey declared once, and what
the rest of the code reads from it; a new journey is one module and one entry."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import temporalio.common
from temporalio import workflow
from temporalio.converter import DataConverter

from relance.contracts import catalogue
from relance.contracts.definitions import CompiledNode
from relance.services.journeys import default_rules
from relance.services.nurturing import load_sequence
from worker import ALL_JOURNEYS, workflow_class

ROOT = Path(__file__).resolve().parent.parent
# The values an input builder may take: the lead id, an id key, a knob.
VALUES = {
    "lead_id": "lead-1",
    "event_id": "event-1",
    "order_id": "order-1",
    "sweep_id": "s-1",
    "broadcast_id": "b-1",
    "per_hour": 1000,
    "key": "webinar",  # a defined journey's key (relance/domain/definitions.py)
    "definition": {
        "key": "webinar",
        "version": 1,
        "name": "Webinar",
        "goals": [],
        "start": "done",
        "nodes": [dataclasses.asdict(CompiledNode("done", "exit"))],
        "exclude": [],
    },
}


def built_input(entry: catalogue.Journey, settings) -> dict:
    accepted = inspect.signature(entry.build_input).parameters
    values = {k: v for k, v in VALUES.items() if k in accepted}
    if "sequence" in entry.requires:
        values["sequence"] = load_sequence(settings.nurturing_sequence_file)
    return entry.input(settings, **values)


@pytest.mark.parametrize("name", list(catalogue.JOURNEYS))
def test_each_entry_names_its_workflow_and_builds_an_input_it_decodes(name, settings):
    entry = catalogue.entry(name)
    cls = workflow_class(entry)
    definition = workflow._Definition.must_from_class(cls)
    assert definition.name == entry.workflow_type
    [input_type], _ = temporalio.common._type_hints_from_func(definition.run_fn)

    if entry.enrollable:  # the API's enrollment tells it whether the lead went through it before
        assert "reenrolled" in inspect.signature(entry.build_input).parameters
    built = built_input(entry, settings)
    fields = {f.name for f in dataclasses.fields(input_type)}
    assert set(built) <= fields, f"{name}: keys {set(built) - fields} are not {input_type}'s"
    converter = DataConverter.default.payload_converter
    [decoded] = converter.from_payloads(converter.to_payloads([built]), [input_type])
    assert isinstance(decoded, input_type)
    [again] = converter.to_payloads([decoded])
    [sent] = converter.to_payloads([built])
    decoded_json, sent_json = json.loads(again.data), json.loads(sent.data)
    assert {k: decoded_json[k] for k in sent_json} == sent_json  # nothing lost or changed


def test_the_worker_runs_every_workflow_of_the_catalogue_once():
    assert sorted(workflow._Definition.must_from_class(c).name for c in ALL_JOURNEYS) == sorted(
        {e.workflow_type for e in catalogue.JOURNEYS.values()}
    )


def test_persisted_names_stay_as_they_were():
    """Workflow ids, message labels and rule names of running and closed journeys."""
    ids = {
        name: e.workflow_id(**{k: VALUES[k] for k in e.id_keys})
        for name, e in catalogue.JOURNEYS.items()
    }
    assert ids == {
        "welcome": "welcome-lead-1",
        "nurturing": "nurture-lead-1",
        "scenario-newsletter": "scenario-newsletter-lead-1",
        "scenario-white_paper": "scenario-white_paper-lead-1",
        "cart": "cart-lead-1",
        "browse": "browse-lead-1",
        "purchase": "purchase-order-1",
        "event": "event-event-1-lead-1",
        "premium": "premium-lead-1",
        "reengage": "reengage-lead-1",
        "reengagement-sweep": "reengagement-sweep-manual-s-1",
        "score-decay": "score-decay",
        "broadcast": "broadcast-b-1",
        "defined": "journey-webinar-lead-1",
        "trigger-sweep": "trigger-sweep",
    }
    for entry in catalogue.JOURNEYS.values():  # the label each module writes in its messages
        module = importlib.import_module(entry.workflow.partition(":")[0])
        if hasattr(module, "JOURNEY"):
            assert module.JOURNEY == entry.label, entry.name
    assert catalogue.counted_workflow_ids("L") == [
        "welcome-L",
        "nurture-L",
        "scenario-newsletter-L",
        "scenario-white_paper-L",
        "cart-L",
        "browse-L",
        "premium-L",
        "reengage-L",
    ]
    assert sorted(catalogue.journeys_with_goal("L", "demo_booked")) == ["nurture-L"]
    assert catalogue.labels_scoring_own_clicks() == {"welcome", "cart", "nurturing"}
    # The default rules, by the label RELANCE_JOURNEY_RULES uses.
    assert default_rules("welcome").reenroll is False
    assert default_rules("nurturing").exclude == ("customer",)
    assert default_rules("browse").cooldown_days == 7
    assert [default_rules(j).cooldown_days for j in ("cart", "event", "purchase")] == [0, 0, 0]
    assert default_rules("reengage") == default_rules("scenario") == default_rules("gone")


def test_a_name_taken_or_an_id_scheme_taken_is_refused():
    welcome = catalogue.entry("welcome")
    with pytest.raises(catalogue.CatalogueError, match="in the catalogue already"):
        catalogue.register(welcome)
    with pytest.raises(catalogue.CatalogueError, match="another journey runs with ids welcome-"):
        catalogue.register(dataclasses.replace(welcome, name="welcome-again", id_prefix="welcome"))
    assert "welcome-again" not in catalogue.JOURNEYS


def test_the_api_enrolls_into_the_enrollable_entries(settings):
    from api.main import create_app

    schema = create_app(settings).openapi()
    journey = schema["paths"]["/leads/{lead_id}/journeys/{journey}"]["post"]["parameters"]
    [param] = [p for p in journey if p["name"] == "journey"]
    # a journey written as data is enrolled by its key, which only the database knows: the path
    # takes a key's shape, and lists the coded journeys
    assert param["schema"]["pattern"] == "^[a-z][a-z0-9_-]{0,59}$"
    # the coded scenarios are named, as replaced (by the journey written as data); not offered
    assert param["schema"]["examples"] == ["welcome", "nurturing"]
    assert all(f"`{name}`" in param["description"] for name in catalogue.enrollable_names())
    assert catalogue.enrollable_names() == (
        "welcome",
        "nurturing",
        "scenario-newsletter",
        "scenario-white_paper",
    )


# A new journey: one module (tests/tiny_journey.py) and one entry -------------------------------
def test_a_journey_added_outside_the_product_is_run_by_the_worker_and_enrolled_by_the_api():
    """The tiny journey is registered before the API and the worker are built (as a plugin), in
    a pytest of its own (tests/tiny_journey_check.py, not collected by the suite): the rest of
    the suite keeps the catalogue as it ships."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.tiny_journey",
            "-p",
            "no:cacheprovider",
            "tests/tiny_journey_check.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:] + run.stderr
