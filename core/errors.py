"""One error tree for all of Cairn.

    CairnError                     code            HTTP (mapped only in app/)
    ├── InvalidInput               invalid_input           422
    │   ├── MissingMetadata        missing_metadata        422
    │   └── EmptyDocument          empty_document          422
    ├── UnsupportedMediaType       unsupported_media_type  415
    ├── PayloadTooLarge            payload_too_large       413
    ├── Unauthenticated            unauthenticated         401
    ├── PermissionDenied           permission_denied       403
    ├── NotFound                   not_found               404
    ├── Conflict                   conflict                409
    ├── RateLimited                rate_limited            429
    ├── Unavailable                unavailable             503
    │   └── QueueUnavailable       queue_unavailable       503
    ├── ParseError                 parse_failed            (job failure reason)
    └── IndexFailure               index_failed            500 (message is safe)

Adapters translate vendor errors into these at the seam; messages are written for the user
(what was wrong, what to do) and are safe to return to a client.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CairnError(Exception):
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(CairnError):
    code = "invalid_input"


class MissingMetadata(InvalidInput):
    code = "missing_metadata"


class EmptyDocument(InvalidInput):
    code = "empty_document"


class UnsupportedMediaType(CairnError):
    code = "unsupported_media_type"


class PayloadTooLarge(CairnError):
    code = "payload_too_large"


class Unauthenticated(CairnError):
    code = "unauthenticated"


class PermissionDenied(CairnError):
    code = "permission_denied"


class NotFound(CairnError):
    code = "not_found"


class Conflict(CairnError):
    code = "conflict"


class RateLimited(CairnError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float = 1.0, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class Unavailable(CairnError):
    code = "unavailable"


class QueueUnavailable(Unavailable):
    """The job queue (Redis) cannot take work right now; nothing was accepted."""

    code = "queue_unavailable"


class ParseError(CairnError):
    """A document could not be parsed; fails only that document's job."""

    code = "parse_failed"


class IndexFailure(CairnError):
    code = "index_failed"
