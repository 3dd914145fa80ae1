"""POST /orders: check the body, give the order an id, emit order.created, answer 201."""

import uuid

from pydantic import BaseModel, Field


class NewOrder(BaseModel):
    item: str = Field(min_length=1)
    quantity: int = Field(ge=1, le=100)
    customer: str = Field(min_length=1)


config = {
    "type": "api",
    "name": "CreateOrder",
    "description": "Accept an order over HTTP",
    "method": "POST",
    "path": "/orders",
    "bodySchema": NewOrder,  # a bad body is answered 400 before the handler runs
    "emits": ["order.created"],
    "flows": ["orders"],
}


async def handler(req, ctx):
    order_id = uuid.uuid4().hex[:8]
    ctx.logger.info("order received", {"id": order_id, "customer": req.body["customer"]})
    await ctx.emit({"topic": "order.created", "data": {"id": order_id, **req.body}})
    return {"status": 201, "body": {"id": order_id, "traceId": ctx.trace_id}}
