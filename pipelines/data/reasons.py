"""Why an annotation row cannot become a sample: the data layer's reason codes, in one list.

Readers never raise on a bad row; they return a :class:`~pipelines.data.records.RejectedRecord`
with one of these codes (the manifest's ``reason`` column) and a ``detail`` saying what was
looked for or found. ``missing_file`` is the media layer's code, reused here: a file absent from
the listing and one that vanished before decoding are the same fact for a user.

``missing_file``       no listed file matches the row (``detail``: what was looked for)
``ambiguous_file``     several files match and neither split nor label folder tells them apart
``empty_label``        the row has no class (also unlabelled test lists)
``bad_label``          the class contains control characters (after NFC normalisation)
``unknown_label``      the class is not in the dataset's own class list or in ``classes.json``
``label_conflict``     the row gives two different classes (UCF-101 index vs. folder), or repeats
                       an accepted video id with another class
``bad_time_range``     times are negative, not finite, or ``time_end <= time_start`` (``detail``:
                       the times)
``duplicate``          the video id was already accepted from an earlier row with the same class
``path_escapes_root``  an absolute path, a URI, ``..`` above the root, or a separator in an id
``malformed_row``      wrong number of columns, unparseable numbers or flags, no id
"""
from __future__ import annotations

from pipelines.media.reasons import MISSING_FILE

AMBIGUOUS_FILE = "ambiguous_file"
EMPTY_LABEL = "empty_label"
BAD_LABEL = "bad_label"
UNKNOWN_LABEL = "unknown_label"
LABEL_CONFLICT = "label_conflict"
BAD_TIME_RANGE = "bad_time_range"
DUPLICATE = "duplicate"
PATH_ESCAPES_ROOT = "path_escapes_root"
MALFORMED_ROW = "malformed_row"

REASONS: tuple[str, ...] = (
    MISSING_FILE, AMBIGUOUS_FILE, EMPTY_LABEL, BAD_LABEL, UNKNOWN_LABEL, LABEL_CONFLICT,
    BAD_TIME_RANGE, DUPLICATE, PATH_ESCAPES_ROOT, MALFORMED_ROW,
)

# Rejections whose label is not trustworthy and must not enter a class map built from data.
UNTRUSTED_LABEL_REASONS = frozenset(
    {EMPTY_LABEL, BAD_LABEL, UNKNOWN_LABEL, LABEL_CONFLICT, MALFORMED_ROW})


