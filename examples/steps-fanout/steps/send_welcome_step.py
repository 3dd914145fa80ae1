"""signup.created: send the welcome mail (here: record it), then report the part done."""

config = {
    "type": "event",
    "name": "SendWelcome",
    "description": "Send the welcome mail",
    "subscribes": ["signup.created"],
    "emits": [{"topic": "signup.part.done", "label": "welcome sent"}],
    "flows": ["signup"],
}


async def handler(input, ctx):
    await ctx.state.set(ctx.trace_id, "welcome", {"sentTo": input["email"]})
    await ctx.emit({"topic": "signup.part.done", "data": {"part": "welcome"}, "key": ctx.trace_id})
