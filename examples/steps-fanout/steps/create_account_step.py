"""signup.created: create the account, then report the part done."""

import hashlib

config = {
    "type": "event",
    "name": "CreateAccount",
    "description": "Create the account",
    "subscribes": ["signup.created"],
    "emits": [{"topic": "signup.part.done", "label": "account created"}],
    "flows": ["signup"],
}


async def handler(input, ctx):
    account_id = "acct-" + hashlib.sha256(input["email"].encode()).hexdigest()[:8]
    await ctx.state.set(ctx.trace_id, "account", {"accountId": account_id})
    await ctx.emit({"topic": "signup.part.done", "data": {"part": "account"}, "key": ctx.trace_id})
