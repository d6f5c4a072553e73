"""Which class goes in front where retrieved segments overlap on the canvas: a depth order of the classes.

SIMS (Sec. 3.3) orders overlapping segments with an ordering network trained on occlusion annotations; the
official code composes Cityscapes canvases with a fixed class order (``order.mat``) derived from occlusion
frequencies. Label maps alone hold no occlusion annotations, so semsynth learns the order from a proxy in the
training labels, *containment*: when class a touches class b in a label map and a's bounding box lies inside
b's (eyes inside the skin, a car inside the road, anything inside the background), a is taken to be in front of
b. Over the training set every pair of classes collects such votes, and a is *in front of* b when it has more
votes than b has against it. Those relations form a graph; where they contradict each other in a cycle, the
relation with the smallest margin of votes is dropped until none is left; each class's *depth* is then the
length of the longest chain of classes behind it, and the classes sorted by depth (ties by class id) are the
order from back to front (a class without votes is at the back, depth 0). Bounding boxes are those of a class's whole region in the map
(not of its pieces, which would make a gap in the hair look like background in front of the hair). An order can
also be given (``semsynth sims index --order``).
"""

from __future__ import annotations

import numpy as np


def touching_classes(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Pairs ``(a, b)``, ``a < b``, of classes that are 8-neighbours somewhere in ``label`` ``[H, W]``."""
    codes = []
    c = label.astype(np.int64)
    for a, b in ((c[:, :-1], c[:, 1:]), (c[:-1, :], c[1:, :]), (c[:-1, :-1], c[1:, 1:]), (c[:-1, 1:], c[1:, :-1])):
        touch = a != b
        lo, hi = np.minimum(a[touch], b[touch]), np.maximum(a[touch], b[touch])
        codes.append(np.unique(lo * num_classes + hi))
    both = np.unique(np.concatenate(codes))
    return np.stack([both // num_classes, both % num_classes], 1)


def class_boxes(label: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, 4]`` (top, left, bottom, right; inclusive) bounding box of each class's region (-1: absent)."""
    boxes = np.full((num_classes, 4), -1, dtype=np.int64)
    for cls in np.unique(label):
        rows = np.flatnonzero((label == cls).any(1))
        cols = np.flatnonzero((label == cls).any(0))
        boxes[cls] = rows[0], cols[0], rows[-1], cols[-1]
    return boxes


def containment_votes(label: np.ndarray, num_classes: int, votes: np.ndarray | None = None,
                      skip: tuple[int, ...] = ()) -> np.ndarray:
    """Add one label map's votes to ``votes[a, b]`` ("a in front of b", ``[C, C]``) and return them (``skip``:
    classes that take no part, e.g. don't-care)."""
    if votes is None:
        votes = np.zeros((num_classes, num_classes), dtype=np.int64)
    boxes = class_boxes(label, num_classes)

    def inside(a: int, b: int) -> bool:  # a's box within b's, and not the same box
        (t1, l1, b1, r1), (t2, l2, b2, r2) = boxes[a], boxes[b]
        return t2 <= t1 and l2 <= l1 and b1 <= b2 and r1 <= r2 and (t1, l1, b1, r1) != (t2, l2, b2, r2)

    for a, b in touching_classes(label, num_classes).tolist():
        if a in skip or b in skip:
            continue
        if inside(a, b):
            votes[a, b] += 1
        elif inside(b, a):
            votes[b, a] += 1
    return votes


def depth_order(votes: np.ndarray) -> list[int]:
    """Classes from back to front (see the module docstring)."""
    n = len(votes)
    margin = votes.astype(np.int64) - votes.T.astype(np.int64)
    behind = {(b, a): int(margin[a, b]) for a in range(n) for b in range(n) if margin[a, b] > 0}  # b behind a
    while True:
        depth, left = _layers(n, behind)
        if not left:
            break
        cycle = [e for e in behind if e[0] in left and e[1] in left]
        del behind[min(cycle, key=lambda e: (behind[e], e))]
    return sorted(range(n), key=lambda c: (depth[c], c))


def _layers(n: int, behind: dict[tuple[int, int], int]) -> tuple[list[int], set[int]]:
    """Longest-chain depth of every class over the edges ``(b, a)`` (b behind a), and the classes left over
    because they lie on a cycle (Kahn's algorithm)."""
    incoming = [0] * n
    ahead: list[list[int]] = [[] for _ in range(n)]
    for b, a in behind:
        incoming[a] += 1
        ahead[b].append(a)
    depth = [0] * n
    ready = [c for c in range(n) if incoming[c] == 0]
    done = 0
    while ready:
        b = ready.pop()
        done += 1
        for a in ahead[b]:
            depth[a] = max(depth[a], depth[b] + 1)
            incoming[a] -= 1
            if incoming[a] == 0:
                ready.append(a)
    return depth, {c for c in range(n) if incoming[c] > 0}


def parse_order(text: str, class_names: list[str]) -> list[int]:
    """``--order`` (class names or ids, back to front, comma-separated, every class once) -> class ids."""
    n = len(class_names)
    by_name = {name.lower(): i for i, name in enumerate(class_names)}
    out = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        if item.isdigit() and int(item) < n:
            out.append(int(item))
        elif item.lower() in by_name:
            out.append(by_name[item.lower()])
        else:
            raise ValueError(f"{item!r} is neither a class name nor a class id 0..{n - 1} (classes: "
                             f"{', '.join(class_names)})")
    twice = sorted({class_names[c] for c in out if out.count(c) > 1})
    if twice:
        raise ValueError(f"class(es) {', '.join(twice)} appear more than once")
    missing = [class_names[c] for c in range(n) if c not in out]
    if missing:
        raise ValueError(f"every class must be placed; missing: {', '.join(missing)}")
    return out
