"""The step graph: edges from ``needs``, decision branches and transitions; loops, order, ancestry.

Edges from ``needs`` never form a cycle. Transitions (``[[transitions]]``, ``next``) and decision
branches may: a loop. Which edge of a loop goes *back* is fixed by a depth-first walk in the order
steps are written, ``needs`` edges first; the back edges are left out of the order and of
readiness, and taking one starts a new visit of its target (see the engine).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from wayang.model.toml_positions import Path

EDGE_KINDS = ("needs", "branch", "next", "transition")


@dataclass(frozen=True, slots=True)
class Edge:
    """``before`` must finish before ``after`` starts; ``path`` is where the edge is written.

    ``kind`` is how it is written; ``when`` (an expression) and ``map`` (input ← output) belong
    to transitions; ``on``/``correlate``/``timeout`` to a transition that waits for an event.
    """

    before: str
    after: str
    path: Path
    kind: str = "needs"
    when: Any = None
    map: dict[str, str] = field(default_factory=dict)
    on: str | None = None
    correlate: Any = None
    timeout: float | None = None


class StepGraph:
    """Predecessor/successor lists over step ids, in definition order. ``back``: the back
    edges, when the caller knows them already (else a depth-first walk finds them)."""

    def __init__(
        self,
        step_ids: Sequence[str],
        edges: Iterable[Edge],
        back: frozenset[tuple[str, str]] | None = None,
    ) -> None:
        self.step_ids = tuple(step_ids)
        self.edges = list(edges)
        self.predecessors: dict[str, list[str]] = {s: [] for s in self.step_ids}
        self.successors: dict[str, list[str]] = {s: [] for s in self.step_ids}
        linked: set[tuple[str, str]] = set()  # a set, not the lists: a join of 1,000 stays linear
        for edge in self.edges:
            pair = (edge.before, edge.after)
            known = edge.before in self.successors and edge.after in self.predecessors
            if known and pair not in linked:
                linked.add(pair)
                self.predecessors[edge.after].append(edge.before)
                self.successors[edge.before].append(edge.after)
        self.back: frozenset[tuple[str, str]] = self._back_edges() if back is None else back

    def _back_edges(self) -> frozenset[tuple[str, str]]:
        """The edges that close a loop, found by a DFS in definition order, ``needs`` first."""
        firsts: dict[str, list[str]] = {s: [] for s in self.step_ids}
        lasts: dict[str, list[str]] = {s: [] for s in self.step_ids}
        placed: set[tuple[bool, str, str]] = set()
        for edge in self.edges:
            if edge.before in firsts and edge.after in firsts:
                needs = edge.kind == "needs"
                if (needs, edge.before, edge.after) not in placed:
                    placed.add((needs, edge.before, edge.after))
                    (firsts if needs else lasts)[edge.before].append(edge.after)
        ordered = {
            s: firsts[s] + [a for a in lasts[s] if (True, s, a) not in placed] for s in firsts
        }
        back: set[tuple[str, str]] = set()
        state = dict.fromkeys(self.step_ids, 0)
        for root in self.step_ids:
            if state[root]:
                continue
            state[root] = 1
            stack: list[tuple[str, int]] = [(root, 0)]
            while stack:
                node, index = stack[-1]
                if index == len(ordered[node]):
                    stack.pop()
                    state[node] = 2
                    continue
                stack[-1] = (node, index + 1)
                after = ordered[node][index]
                if state[after] == 1:
                    back.add((node, after))
                elif state[after] == 0:
                    state[after] = 1
                    stack.append((after, 0))
        return frozenset(back)

    def is_back(self, before: str, after: str) -> bool:
        """Whether ``before → after`` closes a loop (taking it starts ``after`` again)."""
        return (before, after) in self.back

    def forward_predecessors(self, step: str) -> list[str]:
        return [p for p in self.predecessors[step] if (p, step) not in self.back]

    def forward_successors(self, step: str) -> list[str]:
        return [s for s in self.successors[step] if (step, s) not in self.back]

    def loop_body(self, target: str) -> list[str]:
        """Steps reachable from ``target`` without taking a back edge, ``target`` first."""
        seen = {target}
        order = [target]
        queue = deque([target])
        while queue:
            for after in self.forward_successors(queue.popleft()):
                if after not in seen:
                    seen.add(after)
                    order.append(after)
                    queue.append(after)
        return order

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
        """Steps in an order that respects every forward edge, ties broken by definition order."""
        remaining = {s: len(self.forward_predecessors(s)) for s in self.step_ids}
        ready = deque(s for s in self.step_ids if remaining[s] == 0)
        order: list[str] = []
        while ready:
            step = ready.popleft()
            order.append(step)
            for after in self.forward_successors(step):
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
