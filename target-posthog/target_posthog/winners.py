"""Newest (or earliest) value per property name, by an order: merging is idempotent and
order-free, so observations seen twice or in any order give the same result (profiles.py)."""

from __future__ import annotations

from typing import Any


class Winners:
    """name -> value, each name holding the value of its newest observation by order (with
    `earliest`, its earliest).

    Orders are held compactly: a name's order is `orders[name]`, or the edge (`last`; with
    `earliest`, `first`) when it has none, so records arriving in time order (nearly all) only
    move the edge: no per-name work, and little to store. `first`/`last` bound every order held.
    """

    __slots__ = ("earliest", "first", "last", "orders", "values")

    def __init__(self, earliest: bool = False) -> None:
        self.earliest = earliest
        self.values: dict[str, Any] = {}
        self.orders: dict[str, str] = {}  # only names whose order is not the edge
        self.first = self.last = ""

    @property
    def edge(self) -> str:
        return self.first if self.earliest else self.last

    def _wins(self, order: str, held: str) -> bool:
        return order < held if self.earliest else order > held

    def _widen(self, first: str, last: str) -> None:
        if first < self.first:
            self.first = first
        if last > self.last:
            self.last = last

    def _move_edge(self, edge: str, incoming: Any) -> None:
        """Make `edge` the edge, for the names in `incoming` (the others keep their orders)."""
        held, orders = self.values, self.orders
        if not held.keys() <= incoming:
            old = self.edge
            for name in held.keys() - incoming:
                orders.setdefault(name, old)
        if orders:
            for name in incoming:
                orders.pop(name, None)
        if self.earliest:
            self.first = edge
        else:
            self.last = edge

    def add(self, order: str, values: dict[str, Any]) -> None:
        """One observation: `values` seen at `order`."""
        held = self.values
        # The two common cases first, without a call: records arriving in time order.
        if order >= self.last and held:
            if self.earliest:
                if values.keys() <= held.keys():
                    return  # later than every name held, and no new name: nothing wins
            elif not self.orders and held.keys() <= values.keys():
                held.update(values)
                self.last = order
                return
        if not held:
            held.update(values)
            self.first = self.last = order
            return
        edge = self.edge
        if order == edge or self._wins(order, edge):  # beats every name held (the common case)
            self._move_edge(order, values.keys())
            held.update(values)
            self._widen(order, order)
            return
        orders = self.orders
        for name, value in values.items():
            current = orders.get(name, edge) if name in held else None
            if current is None or self._wins(order, current):
                held[name] = value
                orders[name] = order
        self._widen(order, order)

    def merge(self, other: Winners) -> tuple[bool, bool]:
        """Fold `other` in; (a value changed, an order moved without a value changing)."""
        held, orders = self.values, self.orders
        if not other.values:
            return False, False
        if not held:
            held.update(other.values)
            orders.update(other.orders)
            self.first, self.last = other.first, other.last
            return True, False
        edge, other_edge = self.edge, other.edge
        toward = other.last if self.earliest else other.first  # other's order nearest to us
        if toward == edge or self._wins(toward, edge):  # all of `other` wins (the common case)
            changed = not (other.values.items() <= held.items())
            moved = other_edge != edge or bool(other.orders)
            self._move_edge(other_edge, other.values.keys())
            orders.update(other.orders)
            held.update(other.values)
            self._widen(other.first, other.last)
            return changed, moved and not changed
        if self._wins(other_edge, edge):  # the edge moves: pin every name at its order first
            for name in held:
                orders.setdefault(name, edge)
            edge = other_edge
            if self.earliest:
                self.first = edge
            else:
                self.last = edge
        changed = moved = False
        for name, value in other.values.items():
            order = other.orders.get(name, other_edge)
            current = orders.get(name, edge) if name in held else None
            if current is None or self._wins(order, current):
                if current is None or held[name] != value:
                    changed = True
                else:
                    moved = True
                held[name] = value
                orders[name] = order
        self._widen(other.first, other.last)
        return changed, moved and not changed

    def dump(self) -> list[Any]:
        return [self.values, self.orders, self.first, self.last]

    @classmethod
    def load(cls, stored: list[Any], earliest: bool = False) -> Winners:
        winners = cls(earliest)
        winners.values, winners.orders, winners.first, winners.last = stored
        return winners
