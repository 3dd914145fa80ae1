"""POST /reports: ask for a report now, without waiting for the schedule."""

from datetime import UTC, datetime

from wayang.steps import http, step


@step(
    name="RequestReport",
    description="Ask for a report on demand",
    trigger=http("POST", "/reports"),
    emits=["report.due"],
    flows=["reports"],
)
async def request_report(req, ctx):
    period = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    await ctx.emit({"topic": "report.due", "data": {"period": period, "requestedBy": "api"}})
    return {"status": 202, "body": {"traceId": ctx.trace_id}}
