"""order.validated: read the order back from state, mark it confirmed and log it."""

config = {
    "type": "event",
    "name": "ConfirmOrder",
    "description": "Confirm a validated order",
    "subscribes": ["order.validated"],
    "emits": [],
    "flows": ["orders"],
}


async def handler(input, ctx):
    order = await ctx.state.get("orders", input["id"])
    if order is None:
        raise LookupError(f"order {input['id']} is not in state yet")  # retried with backoff
    await ctx.state.set("orders", order["id"], {**order, "status": "confirmed"})
    ctx.logger.info(
        f"order {order['id']} confirmed: {order['quantity']} x {order['item']} "
        f"for {order['customer']}, total {order['total']}"
    )
