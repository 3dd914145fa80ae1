"""POST /signups: check the body and emit signup.created; three steps take it from there."""

config = {
    "type": "api",
    "name": "Signup",
    "description": "Accept a signup over HTTP",
    "method": "POST",
    "path": "/signups",
    "bodySchema": {
        "type": "object",
        "properties": {
            "email": {"type": "string", "pattern": "^[^@ ]+@[^@ ]+$"},
            "name": {"type": "string", "minLength": 1},
            "company": {"type": "string"},
        },
        "required": ["email", "name"],
    },
    "emits": ["signup.created"],
    "flows": ["signup"],
}


async def handler(req, ctx):
    await ctx.emit({"topic": "signup.created", "data": req.body})
    return {"status": 202, "body": {"traceId": ctx.trace_id}}
