"""GET /orders/:id: the order as kept in state, or 404."""

config = {
    "type": "api",
    "name": "GetOrder",
    "description": "Read an order from state",
    "method": "GET",
    "path": "/orders/:id",
    "emits": [],
    "flows": ["orders"],
}


async def handler(req, ctx):
    order = await ctx.state.get("orders", req.pathParams["id"])
    if order is None:
        return {"status": 404, "body": {"error": f"no order {req.pathParams['id']}"}}
    return {"status": 200, "body": order}
