"""predictd's error tree. Every expected failure is one of these; one handler renders them.

PredictdError (500 internal_error)
├── InvalidInput (422 invalid_input)            bad request content, names the field
├── PayloadTooLarge (413 payload_too_large)
├── NotFound (404 not_found)
│   └── ModelNotFound (404 model_not_found)
├── Unavailable (503 unavailable)               retry later; carries Retry-After
│   ├── Overloaded (503 overloaded)                    PREDICTD_MAX_CONCURRENCY reached
│   ├── ModelNotReady (503 model_not_ready)
│   ├── StorageUnavailable (503 storage_unavailable)   database unreachable
│   ├── SpoolFull (503 spool_full)                     no-loss promise would break
│   └── NotDurable (503 not_durable)                   fsync failed in strict mode
├── PredictionTimeout (504 prediction_timeout)
└── ModelFailure (500 model_error)              the model raised; no trace leaves
ArtifactError (500 artifact_error)              an artifact can't be stored or trusted
├── ArtifactTampered (500 artifact_tampered)    its bytes no longer match the registry
└── UntrustedArtifact (500 artifact_untrusted)  it names a type or function not trusted
"""

from __future__ import annotations


class PredictdError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(
        self, message: str, *, field: str | None = None, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.retry_after_s = retry_after_s


class InvalidInput(PredictdError):
    status, code = 422, "invalid_input"


class PayloadTooLarge(PredictdError):
    status, code = 413, "payload_too_large"


class Unauthorized(PredictdError):
    status, code = 401, "unauthorized"


class Forbidden(PredictdError):
    status, code = 403, "forbidden"


class NotFound(PredictdError):
    status, code = 404, "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(PredictdError):
    status, code = 409, "conflict"


class TooManyRequests(PredictdError):
    status, code = 429, "rate_limited"


class Unavailable(PredictdError):
    status, code = 503, "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 1, field: str | None = None) -> None:
        super().__init__(message, field=field, retry_after_s=retry_after_s)


class Overloaded(Unavailable):
    code = "overloaded"


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
