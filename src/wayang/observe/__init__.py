"""Observability: Prometheus metrics, OpenTelemetry traces and structured logs.

Each part is an object the composition root builds and hands to the engine as an observer
(``on_events``); nothing here is global or registered at import.
"""

from wayang.observe.logging import EventLogger, configure_logging
from wayang.observe.metrics import Metrics
from wayang.observe.tracing import Tracing, TracingExecutor

__all__ = ["EventLogger", "Metrics", "Tracing", "TracingExecutor", "configure_logging"]
