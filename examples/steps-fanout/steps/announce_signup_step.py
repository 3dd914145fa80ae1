"""signup.completed: tell sales (here: a log line)."""

config = {
    "type": "event",
    "name": "AnnounceSignup",
    "description": "Tell sales about the new customer",
    "subscribes": ["signup.completed"],
    "emits": [],
    "flows": ["signup"],
}


def handler(input, ctx):  # sync handlers work too; they run on a thread
    ctx.logger.info(
        f"new customer {input['account']['accountId']} (lead score {input['lead']['score']})"
    )
