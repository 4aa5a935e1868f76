"""What the interpreter of defined journeys asks the database: whether a condition node's test
holds for the lead, and why (facts about the lead — score, stage, segment, consent, lists —
never its address)."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from relance.contracts.definitions import ConditionAnswer, ConditionQuestion
from relance.domain.consent import has_consent
from relance.domain.definitions import Test
from relance.domain.models import Lead, ListMember
from relance.domain.segments import segment_and_stage
from relance.domain.settings import Settings


class DefinitionActivities:
    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine

    @activity.defn(name="evaluate_condition")
    def evaluate_condition(self, question: ConditionQuestion) -> ConditionAnswer:
        try:
            test = Test.model_validate(question.test)
        except ValueError as err:
            raise ApplicationError(
                f"not a condition: {err}", type="BadCondition", non_retryable=True
            ) from None
        with Session(self.engine) as session:
            lead = session.get(Lead, question.lead_id)
            if lead is None:
                raise ApplicationError(
                    f"lead {question.lead_id} does not exist",
                    type="LeadNotFound",
                    non_retryable=True,
                )
            holds, why = _Evaluation(session, lead, self.settings).of(test)
        return ConditionAnswer(holds, why)


class _Evaluation:
    """One test against one lead, reading each fact once however often the tree names it."""

    def __init__(self, session: Session, lead: Lead, settings: Settings) -> None:
        self.session, self.lead, self.settings = session, lead, settings
        self._segment_stage: tuple[str, str] | None = None

    def segment_stage(self) -> tuple[str, str]:
        if self._segment_stage is None:
            self._segment_stage = segment_and_stage(self.session, self.lead.id, self.settings)
        return self._segment_stage

    def of(self, test: Test) -> tuple[bool, str]:
        if test.all is not None or test.any is not None:
            parts = [self.of(t) for t in (test.all if test.all is not None else test.any)]
            holds = (all if test.all is not None else any)(h for h, _ in parts)
            word = " and " if test.all is not None else " or "
            return holds, "(" + word.join(w for _, w in parts) + ")"
        if test.not_ is not None:
            holds, why = self.of(test.not_)
            return not holds, f"not ({why})"
        return self.fact(test)

    def fact(self, test: Test) -> tuple[bool, str]:
        describe = test.describe()
        if test.score is not None:
            score = self.lead.score
            holds = (test.score.gte is None or score >= test.score.gte) and (
                test.score.lte is None or score <= test.score.lte
            )
            seen = f"score {score}"
        elif test.stage is not None:
            stage = self.segment_stage()[1]
            holds, seen = stage in test.stage, f"stage {stage}"
        elif test.segment is not None:
            segment = self.segment_stage()[0]
            holds, seen = segment in test.segment, f"segment {segment}"
        elif test.consent is not None:
            holds = has_consent(self.session, self.lead.id, test.consent, "marketing")
            seen = "granted" if holds else "not granted"
        else:
            member = self.session.exec(
                select(ListMember.id)
                .where(ListMember.lead_id == self.lead.id, ListMember.list_name == test.in_list)
                .limit(1)
            ).first()
            holds, seen = member is not None, "a member" if member is not None else "not a member"
        return holds, f"{describe}: {'yes' if holds else 'no'} ({seen})"
