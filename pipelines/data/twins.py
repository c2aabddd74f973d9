"""Declared order twins: pairs of classes in which one is, to the eye, the other played backwards.

They let evaluation ask whether a model uses frame order (``pipelines.evaluation.reversal``): with
a clip's frames reversed, a temporal model should move its prediction to the twin class, an
order-blind one (TSN) cannot. One declared list per dataset family; a class map gets the pairs
of which it has both names, so nothing has to say which dataset a class map came from (the
generated names and Something-Something's label strings cannot be confused).

- ``SYNTHETIC_TWINS``: the generated dataset's classes (``pipelines.synthetic``), where the twin
  is by construction the exact frame reversal (or the reversed motion).
- ``SOMETHING_TWINS``: Something-Something (V1 and V2 label strings, placeholders written
  ``something`` as the readers write them) actions whose reversal is the opposite action.
"""
from __future__ import annotations

from collections.abc import Sequence

SYNTHETIC_TWINS: tuple[tuple[str, str], ...] = (
    ("move_left", "move_right"),
    ("move_up", "move_down"),
    ("recede", "approach"),
    ("rotate_ccw", "rotate_cw"),
    ("disappear", "appear"),
)

SOMETHING_TWINS: tuple[tuple[str, str], ...] = (
    ("Pushing something from left to right", "Pushing something from right to left"),
    ("Pulling something from left to right", "Pulling something from right to left"),
    ("Moving something up", "Moving something down"),
    ("Moving something towards the camera", "Moving something away from the camera"),
    ("Moving something and something closer to each other",
     "Moving something and something away from each other"),
    ("Turning the camera left while filming something",
     "Turning the camera right while filming something"),
    ("Turning the camera upwards while filming something",
     "Turning the camera downwards while filming something"),
    ("Approaching something with your camera", "Moving away from something with your camera"),
    ("Opening something", "Closing something"),
    ("Folding something", "Unfolding something"),
    ("Covering something with something", "Uncovering something"),
    ("Putting something into something", "Taking something out of something"),
)

DECLARED_TWINS: tuple[tuple[str, str], ...] = SYNTHETIC_TWINS + SOMETHING_TWINS


def twins_in(class_names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The declared pairs of which ``class_names`` holds both names (empty: no twin map)."""
    present = set(class_names)
    return tuple(pair for pair in DECLARED_TWINS if pair[0] in present and pair[1] in present)


def twin_indices(class_names: Sequence[str]) -> dict[int, int]:
    """Class index → its twin's index, both ways, for the declared pairs in ``class_names``."""
    index = {name: i for i, name in enumerate(class_names)}
    twins: dict[int, int] = {}
    for a, b in twins_in(class_names):
        twins[index[a]], twins[index[b]] = index[b], index[a]
    return twins
