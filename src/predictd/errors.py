"""predictd's error tree. Every refusal and expected failure is one of these, raised where it
is found and rendered by one function (api/errors.py) in the one error shape; the tree below is
checked against the classes by tests/test_error_tree.py.

PredictdError (500 internal_error)                  also what an unexpected exception becomes
├── BadRequest (400 bad_request)                    a request the HTTP layer could not read
├── InvalidInput (422 invalid_input)                bad request content; names the field
│   └── InvalidJson (422 invalid_json)              not JSON, or nested too deeply
├── Unauthorized (401 unauthorized)
├── Forbidden (403 forbidden)
│   └── LoopbackOnly (403 loopback_only)            auth off: only loopback addresses answer
├── NotFound (404 not_found)
│   └── ModelNotFound (404 model_not_found)
├── MethodNotAllowed (405 method_not_allowed)
├── BodyTimeout (408 body_timeout)                  the body did not arrive in time
├── Conflict (409 conflict)
│   └── NotEnoughData (409 not_enough_data)         too few usable labelled rows to retrain
├── PayloadTooLarge (413 payload_too_large)         as sent, or once inflated
├── UnsupportedMediaType (415 unsupported_media_type)
│   └── UnsupportedEncoding (415 unsupported_encoding)
├── TooManyRequests (429 rate_limited)
├── HttpError (any http_error)                      another status the HTTP framework raised
├── Unavailable (503 unavailable)                   retry later; carries Retry-After
│   ├── Overloaded (503 overloaded)                 PREDICTD_MAX_CONCURRENCY reached
│   ├── ModelNotReady (503 model_not_ready)
│   ├── StorageUnavailable (503 storage_unavailable)  database unreachable
│   ├── SpoolFull (503 spool_full)                  the no-loss promise would break
│   └── NotDurable (503 not_durable)                fsync failed in strict mode
├── PredictionTimeout (504 prediction_timeout)
├── ModelFailure (500 model_error)                  the model raised; no trace leaves
└── ArtifactError (500 artifact_error)              an artifact can't be stored or trusted
    ├── ArtifactTampered (500 artifact_tampered)    its bytes no longer match the registry
    ├── UntrustedArtifact (500 artifact_untrusted)  it names a type or function not trusted
    └── Malformed (500 artifact_error)              fitted arrays that would crash predict
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class PredictdError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        retry_after_s: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s
        self.headers = headers  # more response headers (405's Allow)
        # Counted in predictd_rejected_requests_total: the request was turned away before any
        # prediction (a failure of predictd's own is not).
        self.refusal = self.status < 500


class BadRequest(PredictdError):
    status, code = 400, "bad_request"


class InvalidInput(PredictdError):
    status, code = 422, "invalid_input"


class InvalidJson(InvalidInput):
    code = "invalid_json"


class PayloadTooLarge(PredictdError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(PredictdError):
    status, code = 415, "unsupported_media_type"


class UnsupportedEncoding(UnsupportedMediaType):
    code = "unsupported_encoding"


class BodyTimeout(PredictdError):
    status, code = 408, "body_timeout"


class Unauthorized(PredictdError):
    status, code = 401, "unauthorized"


class Forbidden(PredictdError):
    status, code = 403, "forbidden"


class LoopbackOnly(Forbidden):
    code = "loopback_only"


class NotFound(PredictdError):
    status, code = 404, "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(PredictdError):
    status, code = 405, "method_not_allowed"


class Conflict(PredictdError):
    status, code = 409, "conflict"


class NotEnoughData(Conflict):
    """Retraining found too few labelled predictions it can use (their inputs stored, in the
    window); the message says how many were found, needed and unusable. No version is made."""

    code = "not_enough_data"


class TooManyRequests(PredictdError):
    status, code = 429, "rate_limited"


class HttpError(PredictdError):
    """A status the HTTP framework raised that has no class of its own."""

    code = "http_error"

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status = status


class Unavailable(PredictdError):
    status, code = 503, "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 1, field: str | None = None) -> None:
        super().__init__(message, field=field, retry_after_s=retry_after_s)


class Overloaded(Unavailable):
    code = "overloaded"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.refusal = True  # turned away before any work, like a 4xx


class ModelNotReady(Unavailable):
    code = "model_not_ready"


class StorageUnavailable(Unavailable):
    code = "storage_unavailable"


class SpoolFull(Unavailable):
    code = "spool_full"


class NotDurable(Unavailable):
    code = "not_durable"


class PredictionTimeout(PredictdError):
    status, code = 504, "prediction_timeout"


class ModelFailure(PredictdError):
    status, code = 500, "model_error"


class ArtifactError(PredictdError):
    status, code = 500, "artifact_error"


class ArtifactTampered(ArtifactError):
    code = "artifact_tampered"


class UntrustedArtifact(ArtifactError):
    """The artifact names types or functions predictd does not trust to load."""

    code = "artifact_untrusted"

    def __init__(self, artifact: str, types: list[str]) -> None:
        shown = ", ".join(types[:10]) + (f" and {len(types) - 10} more" if len(types) > 10 else "")
        super().__init__(
            f"{artifact} refers to types predictd does not trust: {shown}. Nothing was "
            "loaded. Add a type to PREDICTD_TRUSTED_TYPES only if you trust the artifact's "
            "author: loading it runs its code"
        )
        self.types = types


@contextmanager
def artifact_file_errors(what: str) -> Iterator[None]:
    """An OSError on a file a user handed in (unreadable, missing, a full disk while copying
    it) as the ArtifactError it is, naming the file, so that no caller further up takes it
    for an unreachable database."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise ArtifactError(f"{what}{where}: {exc.strerror or exc}") from exc
