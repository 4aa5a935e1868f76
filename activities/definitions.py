"""What the interpreter of defined journeys asks the database: whether a condition node's test
holds for the lead, and why (facts about the lead — score, stage, segment, consent, lists,
counts of events — never its address nor its data).

The answer comes from the compiler segments use (relance/domain/segment_query.py), asked of the
one lead: a journey's condition and a segment with the same rules never disagree."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from relance.contracts.definitions import ConditionAnswer, ConditionQuestion
from relance.domain.conditions import Test
from relance.domain.segment_query import RuleError, evaluate
from relance.domain.settings import Settings


class DefinitionActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    @activity.defn(name="evaluate_condition")
    def evaluate_condition(self, question: ConditionQuestion) -> ConditionAnswer:
        try:
            test = Test.model_validate(question.test)
            with Session(self.engine) as session:
                verdict = evaluate(session, question.lead_id, test, self.settings)
        except (ValueError, RuleError) as err:
            raise ApplicationError(
                f"not a condition: {err}", type="BadCondition", non_retryable=True
            ) from None
        if verdict is None:
            raise ApplicationError(
                f"lead {question.lead_id} does not exist", type="LeadNotFound", non_retryable=True
            )
        return ConditionAnswer(verdict.holds, verdict.why)
