"""The sampling core's exception tree.

The core is plain Python: it knows what is wrong with its input, not how a transport
reports it. Each error carries a human ``detail``, a short ``title`` and a stable problem
``type_slug``; the service maps each class to an HTTP status (``sampleplan.service.errors``),
the CLI prints the detail, and the client's offline fallback raises them as they are::

    SamplingError
     ├── InvalidInput                  the input is well-formed but wrong
     │    ├── InvalidLabels
     │    ├── InvalidWeights
     │    ├── InvalidSplit
     │    ├── InvalidPlanConfig
     │    ├── InvalidStreamRequest
     │    └── InvalidRunUpdate
     ├── UnsupportedEncoding           a text encoding Python does not know
     ├── InputTooLarge                 more input than the caller allowed
     └── DeadlineExceeded              work stopped at its deadline
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputNames:
    """How the core's messages name the caller's input, in the caller's own words.

    The same parser reads an HTTP body, a file named on the command line and a local
    file in the client: each caller says what the input is called (``source``) and how
    its user names the label column (``column_option``), so that no caller rewrites the
    core's messages.
    """

    source: str = "the input"
    column_option: str = "the label column argument"


#: The names the core uses when its caller gives none.
PLAIN_INPUT = InputNames()


class SamplingError(Exception):
    """Base of every error the sampling core raises (and of the service's errors)."""

    title: str = "Internal error"
    type_slug: str = "internal-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(SamplingError):
    title = "Invalid input"
    type_slug = "invalid-input"


class InvalidLabels(InvalidInput):
    title = "Invalid labels"
    type_slug = "invalid-labels"


class InvalidWeights(InvalidInput):
    title = "Invalid weights"
    type_slug = "invalid-weights"


class InvalidSplit(InvalidInput):
    title = "Invalid split"
    type_slug = "invalid-split"


class InvalidPlanConfig(InvalidInput):
    title = "Invalid plan configuration"
    type_slug = "invalid-plan-config"


class InvalidStreamRequest(InvalidInput):
    title = "Invalid stream request"
    type_slug = "invalid-stream-request"


class InvalidRunUpdate(InvalidInput):
    title = "Invalid run update"
    type_slug = "invalid-run-update"


class UnsupportedEncoding(SamplingError):
    title = "Unsupported media type"
    type_slug = "unsupported-media-type"


class InputTooLarge(SamplingError):
    title = "Payload too large"
    type_slug = "payload-too-large"


class DeadlineExceeded(SamplingError):
    """Work stopped at its deadline (NOTE [Deadlines] in ``core/deadlines.py``)."""

    title = "Request timeout"
    type_slug = "request-timeout"
