"""Starting an exchange's workflow (the timings it keeps for life, one workflow per id), and
the matcher's view of its request."""

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from ce4big.catalogue.matching import MatchRequest
from ce4big.domain import Language
from ce4big.lifecycle import ExchangeInput, Timings
from ce4big.models import Exchange
from ce4big.settings import Settings

DAY = 86400.0


def exchange_timings(settings: Settings) -> Timings:
    """The settings' durations in seconds, divided by the time scale, frozen at start."""

    def days(value: float) -> float:
        return settings.scaled_seconds(value * DAY)

    return Timings(
        vetting_reminder=days(settings.vetting_reminder_days),
        vetting_escalation=days(settings.vetting_escalation_days),
        changes_reminder=days(settings.changes_reminder_days),
        changes_expiry=days(settings.changes_expiry_days),
        shortlist_reminder=days(settings.shortlist_reminder_days),
        shortlist_escalation=days(settings.shortlist_escalation_days),
        host_review_consent=days(settings.host_review_consent_days),
        partner_reminder=days(settings.partner_reminder_days),
        partner_deadline=days(settings.partner_deadline_days),
        scheduling_reminder=days(settings.scheduling_reminder_days),
        scheduling_deadline=days(settings.scheduling_deadline_days),
        meeting_reminder_before=settings.scaled_seconds(settings.meeting_reminder_hours * 3600),
        survey_delay=days(settings.survey_delay_days),
        survey_reminder=days(settings.survey_reminder_days),
        survey_close=days(settings.survey_close_days),
        outcome_wave=days(settings.outcome_wave_days),
        outcome_wave_close=days(settings.outcome_wave_close_days),
        time_scale=settings.ce4big_time_scale,
    )


def workflow_id_for(exchange_id: int) -> str:
    return f"exchange-{exchange_id}"


async def start_exchange_workflow(
    *, client: Client, settings: Settings, exchange: Exchange
) -> WorkflowHandle[object, str]:
    """Start the exchange's workflow; a second start for the same exchange finds the first."""
    assert exchange.id is not None
    workflow_id = workflow_id_for(exchange.id)
    try:
        return await client.start_workflow(
            "ExchangeWorkflow",
            ExchangeInput(
                exchange_id=exchange.id,
                requester_id=exchange.requester_id,
                requester_organisation_id=exchange.organisation_id,
                home_cluster=exchange.home_cluster,
                timings=exchange_timings(settings),
            ),
            id=workflow_id,
            task_queue=settings.temporal_task_queue,
            result_type=str,
            # An exchange id names one workflow for ever, even after it closed.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(workflow_id, result_type=str)


def match_request_for(exchange: Exchange) -> MatchRequest:
    return MatchRequest(
        title=exchange.title,
        description=exchange.description,
        home_cluster=exchange.home_cluster,
        target_clusters=list(exchange.target_clusters),
        partner_kinds=list(exchange.partner_kinds),
        required_certifications=list(exchange.required_certifications),
        cooperation_type=exchange.cooperation_type,
        language=(exchange.languages or [Language.EN])[0],
        requester_organisation_id=exchange.organisation_id,
    )
