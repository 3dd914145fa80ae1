"""Every minute, ask for a report; written with Wayang's typed helpers instead of a config dict."""

from datetime import UTC, datetime

from wayang.steps import cron, step


@step(
    name="ScheduleReport",
    description="Ask for a report every minute",
    trigger=cron("* * * * *"),  # five fields: minute hour day-of-month month day-of-week
    emits=["report.due"],
    flows=["reports"],
)
async def schedule_report(ctx):
    minute = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    await ctx.emit({"topic": "report.due", "data": {"period": minute, "requestedBy": "cron"}})
