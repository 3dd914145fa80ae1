"""The engine runtime: drives runs with the pure core against a store (services layer)."""

from wayang.runtime.engine import Engine, EngineSettings
from wayang.runtime.names import RunBusyError, RunLostError, RunNotFoundError

__all__ = ["Engine", "EngineSettings", "RunBusyError", "RunLostError", "RunNotFoundError"]
