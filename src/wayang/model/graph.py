"""The step graph: edges from ``needs`` and decision branches, cycles, order, ancestry."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wayang.model.toml_positions import Path


@dataclass(frozen=True, slots=True)
class Edge:
    """``before`` must finish before ``after`` starts; ``path`` is where the edge is written."""

    before: str
    after: str
    path: Path


class StepGraph:
    """Predecessor/successor lists over step ids, in definition order."""

    def __init__(self, step_ids: Sequence[str], edges: Iterable[Edge]) -> None:
        self.step_ids = tuple(step_ids)
        self.edges = list(edges)
        self.predecessors: dict[str, list[str]] = {s: [] for s in self.step_ids}
        self.successors: dict[str, list[str]] = {s: [] for s in self.step_ids}
        for edge in self.edges:
            known = edge.before in self.successors and edge.after in self.predecessors
            if known and edge.before not in self.predecessors[edge.after]:
                self.predecessors[edge.after].append(edge.before)
                self.successors[edge.before].append(edge.after)

    def is_ancestor(self, candidate: str, step: str) -> bool:
        """Whether ``candidate`` always finishes before ``step`` starts."""
        direct = self.predecessors.get(step, [])
        if candidate in direct:
            return True
        seen = set(direct)
        queue = deque(direct)
        while queue:
            for before in self.predecessors.get(queue.popleft(), []):
                if before == candidate:
                    return True
                if before not in seen:
                    seen.add(before)
                    queue.append(before)
        return False

    def topological_order(self) -> list[str]:
        """Steps in an order that respects every edge, ties broken by definition order."""
        remaining = {s: len(p) for s, p in self.predecessors.items()}
        ready = deque(s for s in self.step_ids if remaining[s] == 0)
        order: list[str] = []
        while ready:
            step = ready.popleft()
            order.append(step)
            for after in self.successors[step]:
                remaining[after] -= 1
                if remaining[after] == 0:
                    ready.append(after)
        return order

    def find_cycles(self) -> list[list[str]]:
        """Each elementary cycle found by depth-first search, as ``[a, b, …, a]``."""
        state: dict[str, int] = dict.fromkeys(self.step_ids, 0)  # 0 new, 1 on stack, 2 done
        cycles: list[list[str]] = []
        for root in self.step_ids:
            if state[root] == 0:
                self._visit(root, state, cycles)
        return cycles

    def _visit(self, root: str, state: dict[str, int], cycles: list[list[str]]) -> None:
        # Iterative DFS over successors; ``stack`` holds (node, next successor index).
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        state[root] = 1
        while stack:
            node, index = stack[-1]
            successors = self.successors[node]
            if index == len(successors):
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            stack[-1] = (node, index + 1)
            after = successors[index]
            if state[after] == 1:
                cycles.append([*path[path.index(after) :], after])
            elif state[after] == 0:
                state[after] = 1
                stack.append((after, 0))
                path.append(after)

    def edge_path(self, before: str, after: str) -> Path:
        """Where the edge ``before → after`` is written (the first such place)."""
        return next((e.path for e in self.edges if e.before == before and e.after == after), ())
