"""The interpreter of journeys written as data (relance/domain/definitions.py): one durable
workflow runs every definition, node by node, with the guarantees of the coded journeys.

    enter ─► the start node ─► ... each node names the next ... ─► exit | goal | redirect

- a message goes through the send ledger (consent, suppression, exclusions, cap, window, once):
  marketing in the send window and within the frequency cap (``Journey.send``), transactional at
  once (``send_now``), "best" on the first channel of its preference the lead accepts
  (``send_best``); a message that does not go out ends the journey (not_sent, or excluded) unless
  the node says to go on;
- a message may carry a single-use promo code (issued once per run and node by
  ``issue_promo_code``, given to the template) or repeat one issued earlier (a reminder); a
  condition's ``promo_used`` asks whether the run's code of a node was redeemed;
- a delay is a durable timer: a duration, or until a local time on some weekdays in the lead's
  time zone (the zone read by ``get_send_profile``, the instant by relance/domain/send_window.py);
- a wait for an open or a click of a message node, or a signal by name (any signal the journey
  has no handler of its own for: the dynamic handler counts them), takes ``then`` when it comes,
  ``timeout`` when it does not; signals count from the moment the wait begins;
- a condition is asked of one activity (``evaluate_condition``), which answers the branch and
  why; the why is kept in the status (``decisions``);
- an experiment places the lead on an arm by a hash of the journey's key, the node and the lead
  id (relance/contracts/definitions.py ``assign_arm``): the same arm on replay and on re-entry; the
  arm is recorded on every message sent after it (its step: ``<node>:<arm>``);
- an update adds score points (an event of the scoring rules, once per run and node) or adds
  or removes a list, through the scoring and lists activities;
- a marketing message is about its topic (the node's, else the definition's): the ledger's topic
  gate skips it for a lead who turned that topic off; runs compiled before messages named their
  topic send on the journey's topic from the catalogue, as they did;
- a switch asks its cases of one activity (``evaluate_switch``) and takes the first that holds,
  else its default; the case taken and why are kept in the status, like a condition's;
- a delay until a date attribute reads the date and the lead's zone at that step
  (``read_lead_date``) and waits until that day ± its offset at its local time; a lead without
  the date, or whose moment has already passed, goes on to ``next`` at once, the node saying why
  in the status (``decisions``): a late entry still gets the rest of the journey;
- an update may set custom attributes (``set_lead_attributes``: checked against the lead schema
  and written as ``PATCH /leads/{id}/attributes`` writes them; a retry writes the same values)
  and raise the lifecycle stage (``raise_lead_stage``: a floor, so a stage only moves forward;
  the status says the stage the lead shows after it);
- a checkpoint is shown as the ``Step`` search attribute and kept in the status;
- a wait for a custom event (by its name, its properties equal to ``where``: the signal of the
  event says which of the waits' filters it meets) or for the download of an asset (the
  ``asset_downloaded`` signal, as the nurturing journey gets it) is a wait like the others;
- a task creates a task for a sales rep through the sales hand-off (``create_sales_task``, its
  title and description rendered there with the lead's fields; ``notify_sales_task`` emails the
  rep), once per run, node and visit; the journey goes on at once;
- a webhook calls a named endpoint (``call_journey_webhook``, signed, one delivery id for every
  retry), retried while the endpoint is down (``WEBHOOK_OPTIONS``); its answer mapped into the
  lead's attributes; a refusal, or retries run out, takes ``on_failure`` (else ``next``);
- a redirect enrolls the lead into another journey (a coded one or a published definition)
  through the enrollment path, under its guard and the chain of journeys that led here, then
  ends as redirected (or redirect_refused, the refusal recorded with the lead's data);
- a goal node ends the journey as converted, at once; so does one of the definition's goals
  reached (the ``goal_reached`` signal), wherever the lead is; an unsubscribe ends it too.

The compiled definition travels in the input (ids and knobs only): a lead keeps the version it
entered with. The ledger's step of a message is ``<node>[:<arm>][.<channel>][#<visit>]@<start>``:
a re-entry (the same workflow id, a later start) sends again, a retry or a replay never twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError

from relance.contracts.signals import ASSET_DOWNLOADED, CLICKED, OPENED, TrackingSignal
from workflows.journey import Journey
from workflows.steps import ACTIVITY_OPTIONS, JourneyStatus, SentMessage, skip_of

with workflow.unsafe.imports_passed_through():
    from relance.contracts.commerce import PromoRequest, issue_promo_code
    from relance.contracts.definitions import (
        WORKFLOW_TYPE,
        AttributesChange,
        CompiledNode,
        ConditionQuestion,
        DefinedJourneyInput,
        LeadDateQuestion,
        StageChange,
        SwitchQuestion,
        WebhookCall,
        assign_arm,
        call_journey_webhook,
        evaluate_condition,
        evaluate_switch,
        raise_lead_stage,
        read_lead_date,
        set_lead_attributes,
    )
    from relance.contracts.enrollment import (
        RedirectRequest,
        RefusalRecord,
        record_enrollment_refusal,
        redirect_lead,
    )
    from relance.contracts.leads import LeadRef, get_send_profile
    from relance.contracts.lists import ListChange, change_list_membership
    from relance.contracts.sales import (
        TaskNotice,
        TaskRequest,
        create_sales_task,
        notify_sales_task,
    )
    from relance.contracts.scoring import ScoreChange, add_score
    from relance.contracts.sending import SendRequest, SendResult
    from relance.contracts.skips import SkipReason
    from relance.domain.send_window import SendWindow, local_moment, next_open

# A redirect node enrolls the lead into its target (the enrollment path, with its guard); runs
# started before redirects ran replay as they ran: refused, "not run yet".
REDIRECTS_PATCH = "defined-redirects"
MAX_NODES_PER_RUN = 1000  # a definition's checks refuse instant loops; this is the last net
# A webhook node's call: retried while the endpoint is down or slow (a 5xx, a 429, no answer),
# about 4 minutes in all; then the node fails (its on_failure branch), the journey goes on.
WEBHOOK_OPTIONS = dict(
    start_to_close_timeout=timedelta(seconds=150),  # the endpoint's own timeout is at most 120 s
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(minutes=2),
        maximum_attempts=8,
    ),
)


class DefinedOutcome(StrEnum):
    EXITED = "exited"  # an exit node, or a branch that ends
    CONVERTED = "converted"  # a goal node, or one of the definition's goals reached
    NOT_SENT = "not_sent"
    EXCLUDED = "excluded"
    UNSUBSCRIBED = "unsubscribed"
    REDIRECTED = "redirected"
    REDIRECT_REFUSED = "redirect_refused"


@dataclass
class DefinedStatus(JourneyStatus):
    key: str
    version: int
    node: str  # the node the lead is at ("" before the first, and after the end)
    path: list[str] = field(default_factory=list)  # the nodes taken, in order
    checkpoints: list[str] = field(default_factory=list)
    arms: dict[str, str] = field(default_factory=dict)  # experiment node -> the lead's arm
    decisions: list[str] = field(default_factory=list)  # why each branch was taken


@dataclass
class DefinedResult:
    outcome: DefinedOutcome
    reason: str
    key: str
    version: int
    path: list[str]
    checkpoints: list[str]
    arms: dict[str, str]
    decisions: list[str]
    goal: str | None = None  # the conversion: the goal node's goal, or the goal signalled
    messages: list[SentMessage] = field(default_factory=list)
    redirected_to: str | None = None  # a redirect's target (enrolled into, or refused)


@workflow.defn(name=WORKFLOW_TYPE)
class DefinedJourney(Journey):
    @workflow.init
    def __init__(self, input: DefinedJourneyInput) -> None:
        super().__init__(input.lead_id)
        self.input = input
        self.definition = input.definition
        self.NAME = self.definition.key  # the label of its messages and its rules
        self.GOALS = tuple(self.definition.goals)
        self.node = ""
        self.path: list[str] = []
        self.checkpoints: list[str] = []
        self.arms: dict[str, str] = {}
        self.decisions: list[str] = []
        self.arm = ""  # the experiment arm the lead is on: recorded on the messages that follow
        self.sent: dict[str, str] = {}  # message node -> the id of the message it last sent
        self.promos: dict[str, str] = {}  # message node -> the promo code issued there
        self.opened: set[str] = set()  # message ids opened (or clicked)
        self.clicked: set[str] = set()
        self.signals: Counter[str] = Counter()
        self.visits: Counter[str] = Counter()
        self.topic = ""  # the topic of the message being sent ("": the journey's, as before)
        self.matched: Counter[str] = Counter()  # "<event>/<where key>": custom events that met it
        self.downloads: Counter[str] = Counter()  # asset -> downloads since the journey began

    @workflow.run
    async def run(self, input: DefinedJourneyInput) -> DefinedResult:
        result = await self.until_goal(self._steps())
        if result is None:
            await self.settle()
            goal = self.converted
            return self._finish(
                DefinedOutcome.CONVERTED, f"goal reached: {goal.goal} ({goal.source})", goal.goal
            )
        return result

    async def _steps(self) -> DefinedResult:
        node_id: str | None = self.definition.start
        for _ in range(MAX_NODES_PER_RUN):
            if self.unsubscribed:
                return self._finish(DefinedOutcome.UNSUBSCRIBED, "the lead unsubscribed")
            if node_id is None:
                return self._finish(DefinedOutcome.EXITED, "the path ended")
            node = self.definition.node(node_id)
            self.node = node.id
            self.path.append(node.id)
            self.visits[node.id] += 1
            outcome = await self._run(node)
            if isinstance(outcome, DefinedResult):
                return outcome
            node_id = outcome
        return self._finish(
            DefinedOutcome.EXITED, f"stopped after {MAX_NODES_PER_RUN} nodes in one run"
        )

    async def _run(self, node: CompiledNode) -> str | None | DefinedResult:
        """Run one node: the next node's id (None: the path ends), or the journey's end."""
        match node.type:
            case "message":
                return await self._message(node)
            case "delay" if node.date_attribute:
                await self._delay_until_date(node)
                return node.next
            case "delay":
                await self._delay(node)
                return node.next
            case "wait_for":
                return await self._wait_for(node)
            case "condition":
                answer = await workflow.execute_activity(
                    evaluate_condition,
                    ConditionQuestion(self.lead_id, node.test, dict(self.promos)),
                    summary=f"condition {node.id}",
                    **ACTIVITY_OPTIONS,
                )
                branch, target = ("then", node.then) if answer.holds else ("else", node.otherwise)
                self.decisions.append(f"{node.id}: {answer.why} -> {branch}")
                self.enter(f"condition:{node.id}", f"{answer.why}: {branch} branch")
                return target
            case "experiment":
                arms = [*node.arms, *([node.holdout] if node.holdout else [])]
                arm = assign_arm(self.definition.key, node.id, self.lead_id, arms)
                self.arms[node.id] = arm.name
                self.arm = arm.name
                held = node.holdout is not None and arm.name == node.holdout.name
                self.decisions.append(f"{node.id}: arm {arm.name}" + (" (holdout)" if held else ""))
                self.enter(f"experiment:{node.id}", f"arm {arm.name} ({arm.percent:g} %)")
                return arm.next
            case "update":
                await self._update(node)
                return node.next
            case "checkpoint":
                self.checkpoints.append(node.name)
                self.enter(f"checkpoint:{node.name}", f"Checkpoint {node.name} ({node.id})")
                return node.next
            case "goal":
                return self._finish(
                    DefinedOutcome.CONVERTED, f"goal {node.goal} reached ({node.id})", node.goal
                )
            case "redirect":
                if not workflow.patched(REDIRECTS_PATCH):
                    return self._finish(
                        DefinedOutcome.REDIRECT_REFUSED,
                        f"redirect to {node.journey} ({node.id}): redirects are not run yet",
                    )
                return await self._redirect(node)
            case "switch":
                return await self._switch(node)
            case "task":
                await self._task(node)
                return node.next
            case "webhook":
                return await self._webhook(node)
            case _:  # "exit"
                return self._finish(DefinedOutcome.EXITED, f"exit ({node.id})")

    def request(self, step: str, template: str, **options) -> SendRequest:
        """Every send carries the definition's exclusions: the ledger checks them at the moment
        of sending (a lead who joined an excluded list since entering gets no more messages)."""
        if self.definition.exclude:
            options["exclude"] = list(self.definition.exclude)
        if self.topic:
            options["topic"] = self.topic
        return super().request(step, template, **options)

    # Nodes -----------------------------------------------------------------------------------
    def _ledger_step(self, node: CompiledNode, channel: str = "") -> str:
        visit = self.visits[node.id]
        return (
            self._shown(node)
            + (f".{channel}" if channel else "")
            + (f"#{visit}" if visit > 1 else "")
            + f"@{workflow.info().start_time:%y%m%d%H%M%S}"
        )

    def _shown(self, node: CompiledNode) -> str:
        return node.id + (f":{self.arm}" if self.arm else "")

    async def _message(self, node: CompiledNode) -> str | None | DefinedResult:
        shown = self._shown(node)
        self.enter(f"message:{node.id}", f"Sending {node.template} ({node.channel}, {node.kind})")
        about = ""
        if node.promo_percent_off:
            about = f"promo:{await self._promo(node)}"
        elif node.promo_of:
            if node.promo_of not in self.promos:
                return self._finish(
                    DefinedOutcome.NOT_SENT,
                    f"{node.id} not sent: no promo code was issued at {node.promo_of} in this run",
                )
            about = f"promo:{self.promos[node.promo_of]}"
        if node.channel == "best":

            async def on(channel: str) -> SendResult:
                step = self._ledger_step(node, channel)
                return await self._send_one(node, channel, step, shown, about)

            _, result = await self.send_best(node.channels, on)
        else:
            result = await self._send_one(node, node.channel, self._ledger_step(node), shown, about)
        if result is not None and result.status == "sent":
            self.sent[node.id] = result.message_id or ""
            return node.next
        reason = result.reason if result is not None else "no channel to send on"
        excluded = result is not None and skip_of(result) == SkipReason.EXCLUDED
        return self._finish(
            DefinedOutcome.EXCLUDED if excluded else DefinedOutcome.NOT_SENT,
            f"{node.id} not sent: {reason}",
        )

    async def _promo(self, node: CompiledNode) -> str:
        """The node's single-use code: one per run and node (a second visit, a retry, a replay
        get the same one)."""
        if node.id not in self.promos:
            issued_for = (
                f"{workflow.info().workflow_id}:{node.id}@{workflow.info().start_time:%y%m%d%H%M%S}"
            )
            self.promos[node.id] = await workflow.execute_activity(
                issue_promo_code,
                PromoRequest(
                    self.lead_id,
                    issued_for,
                    node.promo_percent_off,
                    prefix=node.promo_prefix or "RL",
                    valid_days=node.promo_valid_days,
                ),
                summary=f"promo code {node.id}",
                **ACTIVITY_OPTIONS,
            )
        return self.promos[node.id]

    async def _send_one(
        self, node: CompiledNode, channel: str, step: str, shown: str, about: str = ""
    ) -> SendResult:
        self.topic = node.topic
        if node.kind == "transactional":
            result = await self.send_now(
                step, node.template, channel, kind="transactional", record=False, about=about
            )
            self.record(shown, channel, node.template, result)
            return result
        return await self.send(step, node.template, channel, about=about, shown_as=shown)

    async def _delay(self, node: CompiledNode) -> None:
        if node.until_time:
            profile = await workflow.execute_activity(
                get_send_profile, LeadRef(self.lead_id), **ACTIVITY_OPTIONS
            )
            hours, minutes = (int(x) for x in node.until_time.split(":"))
            end = hours * 60 + minutes + 1
            moment = SendWindow(
                days=node.until_days, start=node.until_time, end=f"{end // 60:02d}:{end % 60:02d}"
            )
            now = workflow.now()
            until = next_open(now, profile.time_zone, moment)
            details = f"Until {moment.describe()} {profile.time_zone}: {until:%Y-%m-%d %H:%M} UTC"
            duration = until - now
        else:
            duration = timedelta(seconds=node.seconds)
            details = f"Waiting {_human(duration)}"
        await self.wait(f"delay:{node.id}", details, lambda: self.unsubscribed, duration)

    async def _wait_for(self, node: CompiledNode) -> str | None:
        within = timedelta(seconds=node.seconds)
        if node.event in ("custom", "downloaded"):
            what, came = self._awaited(node)
        elif node.event == "signal":
            seen = self.signals[node.signal]
            what = f"the signal {node.signal}"

            def came() -> bool:
                return self.signals[node.signal] > seen
        else:
            what = f"the {node.event} of {node.message}"
            seen_in = self.clicked if node.event == "clicked" else self.opened

            def came() -> bool:
                return node.message in self.sent and self.sent[node.message] in seen_in

        came_in_time = await self.wait(
            f"wait_for:{node.id}",
            f"Waiting up to {_human(within)} for {what}",
            lambda: came() or self.unsubscribed,
            within,
        )
        if self.unsubscribed:
            return None
        branch, target = ("then", node.then) if came_in_time else ("timeout", node.otherwise)
        self.decisions.append(
            f"{node.id}: {what} {'came' if came_in_time else 'did not come'} -> {branch}"
        )
        return target

    def _awaited(self, node: CompiledNode) -> tuple[str, Callable[[], bool]]:
        """What a wait for a custom event or a download waits for, and whether it came (counted
        from the moment the wait begins)."""
        if node.event == "downloaded":
            seen = self.downloads[node.asset]
            return f"a download of {node.asset}", lambda: self.downloads[node.asset] > seen
        if not node.where_key:  # any event of the name
            seen = self.signals[node.signal]
            return f"the event {node.signal}", lambda: self.signals[node.signal] > seen
        key = f"{node.signal}/{node.where_key}"
        seen = self.matched[key]
        shown = ", ".join(f"{k}={v}" for k, v in sorted(node.where.items()))
        return f"the event {node.signal} ({shown})", lambda: self.matched[key] > seen

    async def _task(self, node: CompiledNode) -> None:
        """A task for a sales rep, created once per run, node and visit (a retry finds it), and
        the rep told; a failed email is the rep's loss, not the journey's."""
        self.enter(f"task:{node.id}", "Handing the lead to a sales rep")
        info = workflow.info()
        key = f"{info.workflow_id}:{node.id}@{info.start_time:%y%m%d%H%M%S}"
        key += f"#{self.visits[node.id]}"
        created = await workflow.execute_activity(
            create_sales_task,
            TaskRequest(
                self.lead_id,
                info.workflow_id,
                key,
                node.task_title,
                workflow.now() + timedelta(seconds=node.seconds),
                templated=True,
                description=node.task_details,
            ),
            summary=f"task {node.id}",
            **ACTIVITY_OPTIONS,
        )
        told = "the rep emailed"
        try:
            notice = await workflow.execute_activity(
                notify_sales_task, TaskNotice(created.task_id, "assigned"), **ACTIVITY_OPTIONS
            )
            if not notice.sent:
                told = f"no email: {notice.reason}"
        except ActivityError as err:  # e.g. the SMTP server refused the rep's address for good
            told = f"the email failed: {err.cause}"
        self.decisions.append(
            f"{node.id}: task {created.task_id} for {created.assignee_name or 'nobody'} ({told})"
        )

    async def _webhook(self, node: CompiledNode) -> str | None:
        self.enter(f"webhook:{node.id}", f"Calling the {node.endpoint} endpoint")
        info = workflow.info()
        delivery = f"{info.workflow_id}:{node.id}@{info.start_time:%y%m%d%H%M%S}"
        delivery += f"#{self.visits[node.id]}"
        try:
            answer = await workflow.execute_activity(
                call_journey_webhook,
                WebhookCall(
                    self.lead_id,
                    self.definition.key,
                    node.id,
                    node.endpoint,
                    delivery,
                    list(node.sent_attributes),
                    dict(node.map),
                ),
                summary=f"webhook {node.id} ({node.endpoint})",
                **WEBHOOK_OPTIONS,
            )
            ok, why = answer.ok, answer.why
        except ActivityError as err:
            ok, why = False, f"not accepted after retries: {err.cause}"
        branch = "next" if ok or node.otherwise is None else "on_failure"
        self.decisions.append(
            f"{node.id}: {node.endpoint} {'accepted' if ok else 'failed'}: {why} -> {branch}"
        )
        return node.otherwise if branch == "on_failure" else node.next

    async def _update(self, node: CompiledNode) -> None:
        self.enter(f"update:{node.id}", "Updating the lead")
        key = f"{workflow.info().workflow_id}:{workflow.info().start_time:%y%m%d%H%M%S}:{node.id}"
        key += f"#{self.visits[node.id]}"
        reason = f"the {self.definition.key} journey, {node.id}"
        if node.score_event:
            scored = await workflow.execute_activity(
                add_score,
                ScoreChange(self.lead_id, node.score_event, key, reason),
                **ACTIVITY_OPTIONS,
            )
            self.set_score(scored.score)
        for action, name in (("add", node.add_to_list), ("remove", node.remove_from_list)):
            if name:
                await workflow.execute_activity(
                    change_list_membership,
                    ListChange(self.lead_id, name, action, reason),
                    **ACTIVITY_OPTIONS,
                )
        if node.attributes:
            await workflow.execute_activity(
                set_lead_attributes,
                AttributesChange(self.lead_id, dict(node.attributes)),
                summary=f"update {node.id}: {', '.join(sorted(node.attributes))}",
                **ACTIVITY_OPTIONS,
            )
        if node.stage:
            staged = await workflow.execute_activity(
                raise_lead_stage,
                StageChange(self.lead_id, node.stage),
                summary=f"update {node.id}: stage {node.stage}",
                **ACTIVITY_OPTIONS,
            )
            self.decisions.append(
                f"{node.id}: stage {staged.stage}"
                + ("" if staged.raised else f" (already at {node.stage} or beyond)")
            )

    async def _switch(self, node: CompiledNode) -> str | None:
        """The first case that holds, else the default; the branch and why in the status."""
        answer = await workflow.execute_activity(
            evaluate_switch,
            SwitchQuestion(self.lead_id, [c.test for c in node.cases], dict(self.promos)),
            summary=f"switch {node.id}",
            **ACTIVITY_OPTIONS,
        )
        if answer.case:
            branch, target = f"case {answer.case}", node.cases[answer.case - 1].next
        else:
            branch, target = "default", node.otherwise
        self.decisions.append(f"{node.id}: {answer.why} -> {branch}")
        self.enter(f"switch:{node.id}", f"{answer.why}: {branch}")
        return target

    async def _delay_until_date(self, node: CompiledNode) -> None:
        """Until the lead's date attribute ± the offset, at the local time in the lead's zone;
        no date, or a moment already past: on at once, saying so."""
        found = await workflow.execute_activity(
            read_lead_date,
            LeadDateQuestion(self.lead_id, node.date_attribute),
            summary=f"delay {node.id}: {node.date_attribute}",
            **ACTIVITY_OPTIONS,
        )
        what = f"{node.date_attribute} {node.offset_days:+d} d at {node.until_time}"
        if found.value is None:
            self.decisions.append(f"{node.id}: no {node.date_attribute} for the lead -> next")
            self.enter(f"delay:{node.id}", f"No {node.date_attribute}: going on")
            return
        day = date.fromisoformat(found.value) + timedelta(days=node.offset_days)
        until = local_moment(day, node.until_time, found.time_zone)
        now = workflow.now()
        if until <= now:
            self.decisions.append(f"{node.id}: {what} ({day} {found.time_zone}) has passed -> next")
            self.enter(f"delay:{node.id}", f"{what}: {day} has passed, going on")
            return
        details = f"Until {what} {found.time_zone}: {until:%Y-%m-%d %H:%M} UTC"
        await self.wait(f"delay:{node.id}", details, lambda: self.unsubscribed, until - now)

    async def _redirect(self, node: CompiledNode) -> DefinedResult:
        """Enroll the lead into the target (checked at publish for loops; the chain and the
        guard hold here too), then end: redirected, or refused and the refusal recorded."""
        self.enter(f"redirect:{node.id}", f"Enrolling the lead into {node.journey}")
        info = workflow.info()
        chain = [*self.input.chain, self.definition.key]
        answer = await workflow.execute_activity(
            redirect_lead,
            RedirectRequest(self.lead_id, node.journey, node.guard, chain, info.workflow_id),
            summary=f"redirect {node.id} to {node.journey}",
            **ACTIVITY_OPTIONS,
        )
        if answer.enrolled:
            result = self._finish(
                DefinedOutcome.REDIRECTED, f"enrolled into {node.journey} ({node.id})"
            )
        else:
            await workflow.execute_activity(
                record_enrollment_refusal,
                RefusalRecord(
                    self.lead_id,
                    info.workflow_id,
                    info.run_id,
                    self.definition.key,
                    node.journey,
                    answer.detail,
                    chain,
                ),
                **ACTIVITY_OPTIONS,
            )
            result = self._finish(
                DefinedOutcome.REDIRECT_REFUSED,
                f"redirect to {node.journey} ({node.id}) refused: {answer.detail}",
            )
        result.redirected_to = node.journey
        return result

    # What the lead does ------------------------------------------------------------------
    @workflow.signal(name=OPENED)
    def on_opened(self, signal: TrackingSignal) -> None:
        self.opened.add(signal.message_id)

    @workflow.signal(name=CLICKED)
    def on_clicked(self, signal: TrackingSignal) -> None:
        self.clicked.add(signal.message_id)
        self.opened.add(signal.message_id)  # a click implies the message was seen

    @workflow.signal(dynamic=True)
    def on_signal(self, name: str, args: Sequence[RawValue]) -> None:
        """Any other signal, by name: what a ``wait_for`` of a signal waits for."""
        self.signals[name] += 1
        # A custom event says which waits' filters it meets; a download, its asset.
        payload = _payload(args)
        for where in payload.get("matches", ()):
            self.matched[f"{name}/{where}"] += 1
        if name == ASSET_DOWNLOADED and isinstance(payload.get("asset"), str):
            self.downloads[payload["asset"]] += 1

    @workflow.query(name="status")
    def status(self) -> DefinedStatus:
        return DefinedStatus(
            step=self.step,
            key=self.definition.key,
            version=self.definition.version,
            node=self.node,
            path=list(self.path),
            checkpoints=list(self.checkpoints),
            arms=dict(self.arms),
            decisions=list(self.decisions),
            messages=list(self.messages),
        )

    def _finish(self, outcome: DefinedOutcome, reason: str, goal: str | None = None):
        self.close(outcome, reason)
        self.node = ""
        return DefinedResult(
            outcome,
            reason,
            self.definition.key,
            self.definition.version,
            list(self.path),
            list(self.checkpoints),
            dict(self.arms),
            list(self.decisions),
            goal,
            list(self.messages),
        )


def _payload(args: Sequence[RawValue]) -> dict:
    """A signal's first argument as JSON, if it is an object ({} if not, or none)."""
    if not args:
        return {}
    try:
        value = workflow.payload_converter().from_payload(args[0].payload, dict)
    except Exception:  # a signal from elsewhere, not JSON: it counts by its name alone
        return {}
    return value if isinstance(value, dict) else {}


def _human(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"
