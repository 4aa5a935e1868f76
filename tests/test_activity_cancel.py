"""A worker shutting down never interrupts an activity in the middle of its database work: every
activity it registers is declared ``no_thread_cancel_exception`` (activities/__init__.py says
why: an exception raised inside the thread can leave the process's write lock or a pooled
connection taken for good, and every other lead's journey waiting behind it)."""

from __future__ import annotations

from temporalio import activity

from activities import build_activities


def test_no_activity_of_the_worker_can_be_interrupted_inside_its_thread(settings, engine):
    registered = build_activities(settings, engine)
    definitions = {
        fn: activity._Definition.from_callable(fn)  # the SDK's record of @activity.defn
        for fn in registered
    }
    assert len(definitions) > 30
    interruptible = sorted(
        d.name for d in definitions.values() if not d.is_async and not d.no_thread_cancel_exception
    )
    assert interruptible == []
