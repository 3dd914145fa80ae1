"""order.created: price the order, keep it in state, emit order.validated."""

PRICES = {"widget": 2.5, "gadget": 12.0}

config = {
    "type": "event",
    "name": "StoreOrder",
    "description": "Price the order and keep it in state",
    "subscribes": ["order.created"],
    "emits": ["order.validated"],
    "input": {  # a JSON Schema; a payload that fails it is dead-lettered, not retried
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "item": {"type": "string"},
            "quantity": {"type": "integer", "minimum": 1},
            "customer": {"type": "string"},
        },
        "required": ["id", "item", "quantity", "customer"],
    },
    "flows": ["orders"],
}


async def handler(input, ctx):
    price = PRICES.get(input["item"], 1.0)
    order = {**input, "total": round(price * input["quantity"], 2), "status": "validated"}
    await ctx.state.set("orders", order["id"], order)
    await ctx.emit({"topic": "order.validated", "data": {"id": order["id"]}})
