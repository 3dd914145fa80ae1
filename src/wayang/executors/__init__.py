"""Step executors: the port the engine runs steps through, and the local adapters behind it.

``LocalExecutor`` is what a worker normally uses; the others are its parts, usable alone.
"""

from wayang.executors.base import Executor, LogSink, TaskResult, TaskSpec
from wayang.executors.context import StepContext, StepLogger
from wayang.executors.local import LocalExecutor
from wayang.executors.python import PythonExecutor
from wayang.executors.shell import ShellExecutor

__all__ = [
    "Executor",
    "LocalExecutor",
    "LogSink",
    "PythonExecutor",
    "ShellExecutor",
    "StepContext",
    "StepLogger",
    "TaskResult",
    "TaskSpec",
]
