"""report.due: count the reports so far, write reports/<trace>.json and keep the latest in state."""

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from wayang.steps import step

REPORTS = Path(__file__).resolve().parents[1] / "reports"


class ReportDue(BaseModel):
    period: str
    requestedBy: str  # noqa: N815 - the event's field name


@step(
    name="WriteReport",
    description="Write the report file",
    subscribes=["report.due"],
    flows=["reports"],
    retry={"attempts": 5, "delay": "1s"},
)
async def write_report(input: ReportDue, ctx):  # the payload arrives as the model
    count = (await ctx.state.get("reports", "count") or 0) + 1
    report = {
        "number": count,
        "period": input.period,
        "requestedBy": input.requestedBy,
        "traceId": ctx.trace_id,
        "writtenAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    REPORTS.mkdir(exist_ok=True)
    (REPORTS / f"{ctx.trace_id}.json").write_text(json.dumps(report, indent=2) + "\n")
    await ctx.state.set("reports", "count", count)
    await ctx.state.set("reports", "latest", report)
    ctx.logger.info(f"report {count} for {input.period} ({input.requestedBy})")
