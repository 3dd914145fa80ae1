"""signup.created: score the lead for sales, then report the part done."""

config = {
    "type": "event",
    "name": "ScoreLead",
    "description": "Score the lead",
    "subscribes": ["signup.created"],
    "emits": [{"topic": "signup.part.done", "label": "lead scored"}],
    "flows": ["signup"],
}


async def handler(input, ctx):
    score = 80 if input.get("company") else 20
    await ctx.state.set(ctx.trace_id, "lead", {"score": score})
    await ctx.emit({"topic": "signup.part.done", "data": {"part": "lead"}, "key": ctx.trace_id})
