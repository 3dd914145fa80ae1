"""signup.part.done: the join. Once every part is in state, emit signup.completed — once.

The three parts report on one topic with the trace id as the message key, and this step is
``ordered``: its deliveries for one signup run one at a time, so two of them never both decide
to complete it. The decision is recorded with the part that made it, so if that delivery is
retried (its process died before its emit was committed) it emits again, and no other does.
"""

PARTS = ("welcome", "account", "lead")

config = {
    "type": "event",
    "name": "CompleteSignup",
    "description": "Join the three parts",
    "subscribes": ["signup.part.done"],
    "emits": ["signup.completed"],
    "input": {
        "type": "object",
        "properties": {"part": {"enum": list(PARTS)}},
        "required": ["part"],
    },
    "ordered": True,
    "flows": ["signup"],
}


async def handler(input, ctx):
    group = ctx.trace_id
    decided = await ctx.state.get(group, "completed")
    if decided is None:
        have = [part for part in PARTS if await ctx.state.get(group, part) is not None]
        if len(have) < len(PARTS):
            ctx.logger.info(f"{input['part']} done; waiting for {len(PARTS) - len(have)} more")
            return
        decided = await ctx.state.set(group, "completed", {"by": input["part"]})
    if decided["by"] != input["part"]:
        return  # another part's delivery completed the signup
    summary = {part: await ctx.state.get(group, part) for part in PARTS}
    await ctx.emit({"topic": "signup.completed", "data": summary})
