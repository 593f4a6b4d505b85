"""Delayed ground truth: prediction ids that any pod can score, and the counters accuracy is computed from.

A prediction id carries what is needed to count its label anywhere: the revision that made the prediction and
the value it predicted, plus a nonce and a checksum, `<revision>:<prediction>:<nonce>:<check>`. Feedback sent to
the model's Service may land on a pod of either track, or on a pod of a later revision that never saw the
request; that pod decodes the id and counts the label for the revision in the id, so labels are never mixed
between revisions, and nothing has to be remembered between the prediction and its label.

The checksum only catches ids that were mangled or made up by mistake; it is not a signature (anyone who can
post feedback can post labels, as anyone who can call the model can call it). A label is counted once per pod:
each pod remembers the ids it counted recently (bounded), so a resent label that lands on another pod is
counted again.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass

CLASS_THRESHOLD = 0.5
"""A prediction at or above this is the positive class (1), below it the negative class (0)."""
MAX_BATCH = 10_000
REMEMBERED_IDS = 100_000
"""Ids this pod remembers having counted, to count a resent label once: about 10 MB at most."""
MAX_REVISIONS = 32
"""Revisions this pod keeps counters for; the one labelled least recently is dropped first."""
_REVISION = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NONCE = re.compile(r"^[0-9a-f]{12}$")


class FeedbackError(ValueError):
    """A label that cannot be counted; the message says why."""


def _check(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:8]


def prediction_id(revision: str, prediction: float) -> str:
    payload = f"{revision}:{prediction!r}:{secrets.token_hex(6)}"
    return f"{payload}:{_check(payload)}"


@dataclass(frozen=True)
class Decoded:
    revision: str
    prediction: float


def decode(identifier: object) -> Decoded:
    """The revision and prediction an id carries; FeedbackError when it is not an id a model server issued."""
    if not isinstance(identifier, str) or not identifier:
        raise FeedbackError(f"the id is {identifier!r}, not a prediction id")
    parts = identifier.split(":")
    if len(parts) != 4:
        raise FeedbackError(f"{identifier[:120]!r} is not a prediction id (revision:prediction:nonce:check)")
    revision, value, nonce, check = parts
    if _check(f"{revision}:{value}:{nonce}") != check:
        raise FeedbackError(f"{identifier[:120]!r} is not an id this model server issued (its checksum is wrong)")
    if not _REVISION.match(revision) or not _NONCE.match(nonce):
        raise FeedbackError(f"{identifier[:120]!r} is not a prediction id (bad revision or nonce)")
    try:
        prediction = float(value)
    except ValueError:
        raise FeedbackError(f"{identifier[:120]!r} carries the prediction {value!r}, not a number") from None
    if not math.isfinite(prediction):
        raise FeedbackError(f"{identifier[:120]!r} carries the prediction {value!r}, not a finite number")
    return Decoded(revision, prediction)


def label_value(label: object) -> float:
    """A true label: a finite number (0 or 1 for a classifier, true and false count as 1 and 0)."""
    if isinstance(label, bool):
        return float(label)
    if isinstance(label, int | float) and math.isfinite(label):
        return float(label)
    raise FeedbackError(f"the label is {label!r}, not a finite number (0 or 1 for a classifier)")


@dataclass(frozen=True)
class Scored:
    """One label, ready to count: for `revision`, whether its class was right, and the absolute error."""

    id: str
    revision: str
    correct: bool
    error: float


def score(identifier: object, label: object) -> Scored:
    decoded = decode(identifier)
    truth = label_value(label)
    predicted_class = 1.0 if decoded.prediction >= CLASS_THRESHOLD else 0.0
    return Scored(str(identifier), decoded.revision, predicted_class == truth, abs(decoded.prediction - truth))


class Remembered:
    """The most recent `size` keys, oldest forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> str | None:
        """Remembers `key` as the most recent; returns the key forgotten to make room, if any."""
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self.size:
            return self._keys.popitem(last=False)[0]
        return None

    def __len__(self) -> int:
        return len(self._keys)
