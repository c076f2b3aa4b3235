"""GenerationWorkflow: one per job. Deterministic orchestration only (spec 6.4, 6.5).

Imports only the standard library, temporalio, the pure domain modules and workflows.activity_calls.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import (
    ApplicationError,
    FailureError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from domain.enums import ProcessingStatus, Scope
    from domain.errors import ErrorCode
    from domain.jobs import OPERATOR_CANCEL_REASON
    from domain.workflow_io import (
        SA_PROCESSING_STATUS,
        Act,
        BeginResult,
        FinalizeRequest,
        FinalizeResult,
        GenerateUnitResult,
        GenerationInput,
        JobRef,
        MarkProcessingResult,
        OperatorCancel,
        PersistUnitRequest,
        PersistUnitResult,
        PlanResult,
        ProgressView,
        UnitFailure,
        UnitRef,
        UnitRequest,
        WorkflowSummary,
    )
    from workflows.activity_calls import (
        ACTIVITY_FAILURE,
        INTERNAL,
        STANDARD_RETRY,
        STATE_WRITE_RETRY,
        TRY,
        WAIT,
        failure_of,
        short_write,
    )

# Runs started before this patch wait for generate_unit to acknowledge a cancel and leave the search
# attribute alone on failure; runs after it neither wait (TRY_CANCEL) nor leave it PROCESSING.
PROMPT_CONTROL_PATCH = "prompt-cancel-and-final-search-attribute"
# Runs after this patch that end quietly (the row already ended) show the row's status in ProcessingStatus
# instead of leaving PENDING/PROCESSING behind.
QUIET_STATUS_PATCH = "quiet-run-shows-row-status"
# Runs started before this patch call mark_processing and plan_units (two local activities, two
# transactions); runs after it call begin_job, which does both in one.
BEGIN_JOB_PATCH = "begin-job-in-one-write"


@workflow.defn(name="GenerationWorkflow")
class GenerationWorkflow:
    def __init__(self) -> None:
        self._status = ProcessingStatus.PENDING
        self._progress = 0
        self._total = 0
        self._done = 0
        self._succeeded: set[int] = set()
        self._failed: dict[int, tuple[str, dict[str, str] | None]] = {}
        self._stop = False
        self._rejected = False
        self._operator_reason: str | None = None
        self._prompt = False
        self._row_status: str | None = None
        self._begun: BeginResult | None = None

    @workflow.query
    def progress(self) -> ProgressView:
        return ProgressView(
            status=self._status, progress=self._progress, units_done=self._done, units_total=self._total
        )

    def _show(self) -> None:
        workflow.set_current_details(f"{self._done}/{self._total} units, {self._progress}%")

    def _set_status(self, status: ProcessingStatus) -> None:
        self._status = status
        workflow.upsert_search_attributes([SA_PROCESSING_STATUS.value_set(status.value)])

    @workflow.update
    async def cancel(self, req: OperatorCancel) -> ProgressView:
        """Operator cancel with a reason the row records (``temporal workflow update execute … --name
        cancel --input '{"reason":"…"}'``): the job stops like a workflow cancel and the row becomes
        CANCELLED with ``cancelled_by=OPERATOR`` and this reason. Answers once the row is written."""
        self._operator_reason = self._operator_reason or req.reason.strip() or OPERATOR_CANCEL_REASON
        await workflow.wait_condition(lambda: self._status.is_terminal)
        return self.progress()

    @workflow.run
    async def run(self, inp: GenerationInput) -> WorkflowSummary:
        self._prompt = workflow.patched(PROMPT_CONTROL_PATCH)
        try:
            return await self._run(inp)
        except FailureError:
            if self._prompt and not self._status.is_terminal:
                # Ending without a terminal write of ours: the reconciler mirrors the row from this run's
                # outcome, but the attribute must not keep saying PENDING/PROCESSING (issue 7.7).
                self._set_status(ProcessingStatus.FAILED)
            raise

    async def _run(self, inp: GenerationInput) -> WorkflowSummary:
        ref = JobRef(process_id=inp.process_id, scope=inp.scope)
        try:
            if workflow.patched(BEGIN_JOB_PATCH):
                self._begun = await short_write(Act.BEGIN_JOB, ref, BeginResult)
                marked = self._begun.marked
            else:
                marked = await short_write(Act.MARK_PROCESSING, ref, MarkProcessingResult)
        except asyncio.CancelledError:
            await self._cancelled(inp)
            raise
        except FailureError as err:
            if is_cancelled_exception(err):
                await self._cancelled(inp)
                raise
            code, details = failure_of(err)
            if code in INTERNAL:
                self._refused(details)
                return self._quiet(inp)
            raise ApplicationError(code, type=code, non_retryable=True) from err
        self._progress = marked.progress
        self._set_status(ProcessingStatus.PROCESSING)
        self._show()

        work = asyncio.ensure_future(self._work(inp))
        remaining = max((marked.deadline_at - workflow.now()).total_seconds(), 0.0)
        try:
            await workflow.wait_condition(
                lambda: work.done() or self._operator_reason is not None, timeout=timedelta(seconds=remaining)
            )
        except builtins.TimeoutError:
            work.cancel()
            await self._settle(work)
            if self._stop:
                return self._quiet(inp)
            return await self._end(
                inp, ProcessingStatus.TIMEOUT, ErrorCode.TIMEOUT_ERROR.value, {"timeoutKind": "JOB_DEADLINE"}
            )
        except asyncio.CancelledError:
            work.cancel()
            await self._settle(work)
            await self._cancelled(inp)
            raise
        if not work.done():
            work.cancel()
            await self._settle(work)
            return await self._operator_cancelled(inp)
        completed_in_persist = work.result()
        if self._stop:
            return self._quiet(inp)
        if completed_in_persist:
            self._progress = 100
            self._set_status(ProcessingStatus.COMPLETED)
            return WorkflowSummary(outcome="COMPLETED", process_id=inp.process_id, status=self._status)
        return await self._decide(inp)

    async def _settle(self, work: asyncio.Future[bool]) -> None:
        """Wait until in-flight activities have acknowledged the cancel."""
        try:
            await work
        except asyncio.CancelledError:
            pass
        except FailureError as err:
            if not is_cancelled_exception(err):
                raise

    async def _cancelled(self, inp: GenerationInput) -> bool:
        """The row's terminal write for a workflow cancel (a no-op when the API cancelled it first)."""
        applied = await self._finalize(
            FinalizeRequest(
                process_id=inp.process_id,
                status=ProcessingStatus.CANCELLED,
                error_code=ErrorCode.CANCELLED.value,
                cancel_reason=self._operator_reason
                or workflow.cancellation_reason()
                or OPERATOR_CANCEL_REASON,
            )
        )
        self._set_status(ProcessingStatus.CANCELLED)
        return applied

    async def _operator_cancelled(self, inp: GenerationInput) -> WorkflowSummary:
        """The end of a run stopped by the ``cancel`` update: Temporal has no cancel request to honour (a
        workflow cannot cancel itself), so the run fails with type CANCELLED once the row says so."""
        applied = await self._cancelled(inp)
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not applied:
            return self._quiet(inp)
        raise ApplicationError(
            f"cancelled by an operator: {self._operator_reason}",
            type=ErrorCode.CANCELLED.value,
            non_retryable=True,
        )

    def _refused(self, details: Mapping[str, str] | None) -> None:
        """An activity refused this run (STALE_RUN or JOB_NOT_ACTIVE): stop, keeping the row's status."""
        self._stop = True
        self._row_status = (details or {}).get("rowStatus", self._row_status)

    def _failure(self, err: FailureError) -> tuple[str, dict[str, str] | None] | None:
        """The code and details of an activity that failed for good; None for an internal refusal (then
        recorded by ``_refused``). A cancellation is raised again."""
        if is_cancelled_exception(err):
            raise err
        code, details = failure_of(err)
        if code in INTERNAL:
            self._refused(details)
            return None
        return code, details

    def _quiet(self, inp: GenerationInput) -> WorkflowSummary:
        """The end of a run that the row refused: nothing written. Operators see the row's final status
        rather than the PENDING/PROCESSING this run last said (runs before the patch leave it)."""
        row = ProcessingStatus(self._row_status) if self._row_status else None
        if row is not None and row.is_terminal and workflow.patched(QUIET_STATUS_PATCH):
            self._set_status(row)
        return WorkflowSummary(outcome="ROW_ALREADY_TERMINAL", process_id=inp.process_id)

    async def _work(self, inp: GenerationInput) -> bool:
        """Plan, then generate → persist each unit under the concurrency bound.

        Returns True when a target-scope persist_unit already committed COMPLETED.
        """
        if self._begun is not None:
            plan = self._begun.plan
            if plan is None:
                self._failed[-1] = (
                    self._begun.plan_error or ErrorCode.UNKNOWN_ERROR.value,
                    self._begun.plan_error_details,
                )
                return False
        else:
            try:
                plan = await workflow.execute_local_activity(
                    Act.PLAN_UNITS,
                    JobRef(process_id=inp.process_id, scope=inp.scope),
                    result_type=PlanResult,
                    cancellation_type=TRY,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=STATE_WRITE_RETRY,
                )
            except ACTIVITY_FAILURE as err:
                code, details = failure_of(err)
                if code in INTERNAL:
                    self._refused(details)
                    return False
                self._failed[-1] = (code, details)
                return False
        self._total = len(plan.units) + len(plan.already_succeeded)
        self._done = len(plan.already_succeeded)
        self._show()
        gate = asyncio.Semaphore(plan.concurrency)
        completed = await asyncio.gather(*(self._unit(inp, plan, u, gate) for u in plan.units))
        return any(completed)

    async def _unit(
        self, inp: GenerationInput, plan: PlanResult, unit: UnitRef, gate: asyncio.Semaphore
    ) -> bool:
        async with gate:
            if self._stop or self._rejected:
                return False
            req = UnitRequest(process_id=inp.process_id, unit=unit, scope=inp.scope)
            try:
                generated = await workflow.execute_activity(
                    Act.GENERATE_UNIT,
                    req,
                    result_type=GenerateUnitResult,
                    start_to_close_timeout=timedelta(seconds=plan.generate_timeout_seconds),
                    heartbeat_timeout=timedelta(seconds=plan.heartbeat_timeout_seconds),
                    retry_policy=STANDARD_RETRY,
                    # Never wait for the AI call to acknowledge a cancel: the deadline and a cancel end the
                    # row at once, and the claim check refuses whatever the call does later (spec 6.8).
                    cancellation_type=TRY if self._prompt else WAIT,
                )
                completed = False
                if generated.output is not None:
                    persisted = await workflow.execute_local_activity(
                        Act.PERSIST_UNIT,
                        PersistUnitRequest(
                            process_id=inp.process_id, unit=unit, scope=inp.scope, output=generated.output
                        ),
                        result_type=PersistUnitResult,
                        start_to_close_timeout=timedelta(seconds=30),
                        retry_policy=STATE_WRITE_RETRY,
                        cancellation_type=WAIT,
                    )
                    completed = persisted.job_completed
                    self._progress = max(self._progress, persisted.progress)
                self._succeeded.add(unit.ordinal)
                self._done += 1
                self._show()
                return completed
            except ACTIVITY_FAILURE as err:
                failure = self._failure(err)
                if failure is None:
                    return False
                code, details = failure
                if code == ErrorCode.AI_REQUEST_REJECTED.value:
                    self._rejected = True
                self._failed[unit.ordinal] = (code, details)
                self._done += 1
                await self._record_failure(inp, unit, code, details)
                return False

    async def _record_failure(
        self, inp: GenerationInput, unit: UnitRef, code: str, details: dict[str, str] | None
    ) -> None:
        try:
            failure = UnitFailure(
                process_id=inp.process_id, unit=unit, scope=inp.scope, error_code=code, details=details
            )
            await short_write(Act.RECORD_UNIT_FAILURE, failure)
        except ACTIVITY_FAILURE as err:
            self._failure(err)
        self._show()

    async def _decide(self, inp: GenerationInput) -> WorkflowSummary:
        """Spec 6.5 outcome for a run whose units are all done."""
        if not self._failed:
            return await self._end(inp, ProcessingStatus.COMPLETED, None, None)
        if self._succeeded and inp.scope is Scope.GOAL:
            not_attempted = self._total - self._done
            return await self._end(
                inp,
                ProcessingStatus.FAILED,
                ErrorCode.PARTIAL_FAILURE.value,
                {
                    "succeeded": len(self._succeeded),
                    "failed": len(self._failed),
                    "notAttempted": not_attempted,
                },
            )
        code, details = self._failed[min(self._failed)]
        status = (
            ProcessingStatus.TIMEOUT if code == ErrorCode.TIMEOUT_ERROR.value else ProcessingStatus.FAILED
        )
        return await self._end(inp, status, code, details)

    async def _end(
        self,
        inp: GenerationInput,
        status: ProcessingStatus,
        code: str | None,
        details: Mapping[str, object] | None,
    ) -> WorkflowSummary:
        applied = await self._finalize(
            FinalizeRequest(
                process_id=inp.process_id,
                status=status,
                error_code=code,
                details=dict(details) if details else None,
            )
        )
        if not applied:
            return self._quiet(inp)
        self._set_status(status)
        if status is ProcessingStatus.COMPLETED:
            self._progress = 100
            return WorkflowSummary(outcome="COMPLETED", process_id=inp.process_id, status=status)
        raise ApplicationError(f"job ended {status.value}: {code}", type=code, non_retryable=True)

    async def _finalize(self, req: FinalizeRequest) -> bool:
        """The terminal write; True when the row now holds it (also when an earlier attempt of this very
        write committed but its completion was lost)."""
        result = await short_write(Act.FINALIZE, req, FinalizeResult)
        if result.applied or result.repeated:
            return True
        self._row_status = result.status.value
        return False
