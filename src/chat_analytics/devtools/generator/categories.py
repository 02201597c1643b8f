"""The categories snapshot: a seeded tree shaped like a real extract, quirks included.

Shape (see `knobs`): `DEPTH_COUNTS` nodes per depth; only a few roots have children, the other roots are
flat and mostly disabled; children spread over parents with a heavy tail. Quirks of the real extract are
reproduced on purpose: roots have an empty `parent_id` except exactly one written as the text `null`,
exactly one row has an empty `disabled` (it inherits its parent's value), and some enabled categories sit
under a disabled ancestor. Rows are written in shuffled order, without a newline at the end of the file.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from chat_analytics.devtools.generator import knobs

CATEGORIES_HEADER = "id,parent_id,disabled"
#: Namespace of the category ids: uuid5(namespace, "<seed>/<index>").
CATEGORY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "chat-analytics/generator/categories")
NULL_PARENT_TEXT = "null"


@dataclass(frozen=True)
class CategoryTree:
    """Categories by index (parents always have a smaller index than their children)."""

    ids: tuple[str, ...]
    parent: np.ndarray  # int64, -1 for roots
    depth: np.ndarray  # int64, 0 for roots
    disabled: tuple[str, ...]  # "true", "false" or "" (inherits)
    null_parent_root: int  # the root written with parent_id `null`
    empty_disabled: int  # the row written with an empty `disabled`
    row_order: np.ndarray  # file order (a permutation of the indices)

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def effectively_disabled(self) -> np.ndarray:
        """True where the category or any ancestor says `disabled=true` (empty inherits)."""
        explicit = np.array([value == "true" for value in self.disabled], dtype=bool)
        effective = explicit.copy()
        for index in range(len(self.ids)):  # parents come first: one pass suffices (~450 rows)
            parent = int(self.parent[index])
            if parent >= 0:
                effective[index] |= effective[parent]
        return effective

    @cached_property
    def enabled_under_disabled(self) -> int:
        """Categories written `false` that have a disabled ancestor."""
        has_parent = self.parent >= 0
        parent_effective = np.zeros(len(self), dtype=bool)
        parent_effective[has_parent] = self.effectively_disabled[self.parent[has_parent]]
        explicit_false = np.array([value == "false" for value in self.disabled], dtype=bool)
        return int((explicit_false & parent_effective).sum())

    def csv_bytes(self) -> bytes:
        """The snapshot file's bytes (shuffled rows, no trailing newline, like the real extract)."""
        lines = [CATEGORIES_HEADER]
        for index in self.row_order.tolist():
            parent = int(self.parent[index])
            if index == self.null_parent_root:
                parent_text = NULL_PARENT_TEXT
            else:
                parent_text = self.ids[parent] if parent >= 0 else ""
            lines.append(f"{self.ids[index]},{parent_text},{self.disabled[index]}")
        return "\n".join(lines).encode("ascii")

    def summary(self) -> dict[str, object]:
        """Facts about the snapshot for the ground truth."""
        depth_counts = np.bincount(self.depth)
        return {
            "rows": len(self),
            "roots": int((self.parent < 0).sum()),
            "depth_counts": {str(depth): int(count) for depth, count in enumerate(depth_counts)},
            "disabled_values": {value: self.disabled.count(value) for value in ("true", "false", "")},
            "effectively_disabled": int(self.effectively_disabled.sum()),
            "enabled_under_disabled_ancestor": self.enabled_under_disabled,
            "null_parent_id_root": self.ids[self.null_parent_root],
            "empty_disabled_id": self.ids[self.empty_disabled],
            "trailing_newline": False,
        }


def build_categories(seed: int, rng: np.random.Generator) -> CategoryTree:
    """Build the seeded category tree."""
    depth = np.repeat(np.arange(len(knobs.DEPTH_COUNTS)), knobs.DEPTH_COUNTS)
    parent = _assign_parents(rng)
    children = _children(parent)
    tree_roots = np.arange(knobs.TREE_ROOTS)
    sizes = np.array([_subtree_size(children, int(root)) for root in tree_roots])
    null_root = int(tree_roots[np.argmax(sizes)])
    disabled, empty = _assign_disabled(rng, parent, depth, children, sizes, null_root)
    ids = tuple(str(uuid.uuid5(CATEGORY_NAMESPACE, f"{seed}/{index}")) for index in range(len(parent)))
    return CategoryTree(
        ids=ids,
        parent=parent,
        depth=depth,
        disabled=tuple(disabled),
        null_parent_root=null_root,
        empty_disabled=empty,
        row_order=rng.permutation(len(parent)),
    )


def _zipf_choice(rng: np.random.Generator, candidates: np.ndarray, size: int, exponent: float) -> np.ndarray:
    """Pick `size` candidates with heavy-tailed popularity over a random ranking."""
    ranks = rng.permutation(len(candidates))
    weights = 1.0 / (ranks + 1.0) ** exponent
    return rng.choice(candidates, size=size, p=weights / weights.sum())


def _assign_parents(rng: np.random.Generator) -> np.ndarray:
    """Parent index per node; depth-1 nodes hang under the first `TREE_ROOTS` roots only."""
    offsets = np.concatenate([[0], np.cumsum(knobs.DEPTH_COUNTS)])
    parts = [np.full(knobs.DEPTH_COUNTS[0], -1, dtype=np.int64)]
    for level in range(1, len(knobs.DEPTH_COUNTS)):
        candidates = np.arange(offsets[level - 1], offsets[level])
        if level == 1:
            candidates = candidates[: knobs.TREE_ROOTS]
        chosen = _zipf_choice(rng, candidates, knobs.DEPTH_COUNTS[level], knobs.CHILDREN_ZIPF)
        parts.append(np.sort(chosen).astype(np.int64))
    return np.concatenate(parts)


def _children(parent: np.ndarray) -> list[list[int]]:
    children: list[list[int]] = [[] for _ in range(len(parent))]
    for child, par in enumerate(parent.tolist()):
        if par >= 0:
            children[par].append(child)
    return children


def _descendants(children: list[list[int]], node: int) -> list[int]:
    out: list[int] = []
    stack = list(children[node])
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(children[current])
    return out


def _subtree_size(children: list[list[int]], node: int) -> int:
    return 1 + len(_descendants(children, node))


def _assign_disabled(
    rng: np.random.Generator,
    parent: np.ndarray,
    depth: np.ndarray,
    children: list[list[int]],
    tree_root_sizes: np.ndarray,
    null_root: int,
) -> tuple[list[str], int]:
    """`disabled` text per node and the index of the one empty value."""
    disabled = np.zeros(len(parent), dtype=bool)
    _disable_roots(rng, disabled, tree_root_sizes, null_root)
    under = _disable_branches(rng, disabled, depth, children)
    # Everything below a disabled node is disabled too, except a known number of explicit `false`s.
    under_nodes = np.flatnonzero(under)
    keep = rng.choice(under_nodes, size=min(knobs.ENABLED_UNDER_DISABLED, len(under_nodes)), replace=False)
    disabled[under_nodes] = True
    disabled[keep] = False
    # The one empty `disabled`: a depth-1 node under an enabled root (inherits `false`), with children.
    free = [i for i in range(len(parent)) if depth[i] == 1 and not under[i] and not disabled[i]]
    empty = int(rng.choice([i for i in free if children[i]] or free))
    _top_up_with_leaves(rng, disabled, depth, children, under, empty)
    text = ["true" if value else "false" for value in disabled.tolist()]
    text[empty] = ""
    return text, empty


def _disable_roots(
    rng: np.random.Generator, disabled: np.ndarray, tree_root_sizes: np.ndarray, null_root: int
) -> None:
    """Disable some tree roots (among the smaller trees, never the `null` one) and most flat roots."""
    by_size = [int(r) for r in np.argsort(tree_root_sizes, kind="stable") if int(r) != null_root]
    n_disabled = knobs.TREE_ROOTS - knobs.ENABLED_TREE_ROOTS
    disabled[rng.choice(by_size[: 2 * n_disabled], size=n_disabled, replace=False)] = True
    flat_roots = np.arange(knobs.TREE_ROOTS, knobs.DEPTH_COUNTS[0])
    n_flat = round(knobs.FLAT_ROOT_DISABLED_SHARE * len(flat_roots))
    disabled[rng.choice(flat_roots, size=n_flat, replace=False)] = True


def _disable_branches(
    rng: np.random.Generator, disabled: np.ndarray, depth: np.ndarray, children: list[list[int]]
) -> np.ndarray:
    """Disable internal nodes under enabled ancestors: at least `DISABLED_INTERNAL_NODES`, and more until
    enough nodes sit under a disabled ancestor; returns which nodes do."""
    under = _under_disabled(disabled, children)
    internal = [
        i for i in range(len(depth)) if depth[i] > 0 and children[i] and not under[i] and not disabled[i]
    ]
    picked = 0
    for k in rng.permutation(len(internal)).tolist():
        if picked >= knobs.DISABLED_INTERNAL_NODES and under.sum() >= 2 * knobs.ENABLED_UNDER_DISABLED:
            break
        if not under[internal[k]]:
            disabled[internal[k]] = True
            under = _under_disabled(disabled, children)
            picked += 1
    return under


def _top_up_with_leaves(
    rng: np.random.Generator,
    disabled: np.ndarray,
    depth: np.ndarray,
    children: list[list[int]],
    under: np.ndarray,
    empty: int,
) -> None:
    """Disable enabled leaves (which changes no one else's ancestry) until `DISABLED_SHARE` is met."""
    leaves = [
        i
        for i in range(len(depth))
        if depth[i] > 0 and not children[i] and not under[i] and not disabled[i] and i != empty
    ]
    missing = max(0, min(round(knobs.DISABLED_SHARE * len(depth)) - int(disabled.sum()), len(leaves)))
    disabled[rng.choice(np.array(leaves, dtype=np.int64), size=missing, replace=False)] = True


def _under_disabled(disabled: np.ndarray, children: list[list[int]]) -> np.ndarray:
    """True for nodes with a disabled strict ancestor."""
    under = np.zeros(len(disabled), dtype=bool)
    for node in np.flatnonzero(disabled).tolist():
        under[_descendants(children, node)] = True
    return under
