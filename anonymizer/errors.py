"""The reference's error kinds. Messages never contain resource content or keys."""

from __future__ import annotations


class AnonymizerError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigurationError(AnonymizerError):
    """The configuration (or a key) is unusable; nothing should be written (reference:
    AnonymizerConfigurationException)."""


class InvalidInputError(AnonymizerError):
    """The input is not a valid FHIR R4 resource (reference: InvalidInputException). Never skipped
    by `processingErrors`. `kind` classifies it for the fault table."""

    def __init__(self, message: str, kind: str = "invalid_fhir") -> None:
        super().__init__(message)
        self.kind = kind


class ProcessingError(AnonymizerError):
    """A method failed on a value (reference: AnonymizerProcessingException); the only kind that
    `processingErrors: skip` turns into the empty resource."""
