"""GET /reports/latest: the newest report, from state."""

from wayang.steps import http, step


@step(
    name="LatestReport",
    description="Read the newest report",
    trigger=http("GET", "/reports/latest"),
    flows=["reports"],
)
async def latest_report(req, ctx):
    report = await ctx.state.get("reports", "latest")
    if report is None:
        return {"status": 404, "body": {"error": "no report yet"}}
    return {"status": 200, "body": report}
