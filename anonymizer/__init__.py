"""FHIR R4 de-identification compatible with Microsoft's anonymizer configuration format."""

from anonymizer.engine import ENGINE_VERSION, Context, Engine, is_empty_resource
from anonymizer.errors import AnonymizerError, ConfigurationError, InvalidInputError, ProcessingError
from anonymizer.methods.encrypt import decrypt

__all__ = [
    "ENGINE_VERSION",
    "AnonymizerError",
    "ConfigurationError",
    "Context",
    "Engine",
    "InvalidInputError",
    "ProcessingError",
    "decrypt",
    "is_empty_resource",
]
