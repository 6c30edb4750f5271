"""The engine: a configuration compiled once into a plan, applied to one resource at a time.

An engine may be shared by threads (the Function keeps one per worker process and runs two blobs
at once): its compiled rules and plan never change once built (plan.py builds the plan lazily,
under a lock), and what a walk learns while running lives in a `Runtime` of each thread
(walker.py), made on the thread's first resource.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from anonymizer import jsonio
from anonymizer.config import Configuration, parse_json, read_configuration_text
from anonymizer.config import build_configuration as _build_configuration
from anonymizer.core import CoreRunner, choose_engine
from anonymizer.errors import InvalidInputError, ProcessingError
from anonymizer.labels import empty_resource
from anonymizer.methods import REGISTRY
from anonymizer.methods.base import Method, ResourceState
from anonymizer.plan import ResourcePlanBuilder, compile_rules
from anonymizer.r4 import model
from anonymizer.r4.compartment import patient_id_of
from anonymizer.r4.model import is_resource_type
from anonymizer.shapes import CodeCache
from anonymizer.walker import Runtime, Walk

ENGINE_VERSION = "0.1.0"

Methods = Mapping[str, type[Method]]


@dataclass(frozen=True)
class Context:
    """Feeds the `file` and `folder` date-shift scopes."""

    file_name: str | None = None
    folder_name: str | None = None


def build_configuration(raw: Any, *, methods: Methods = REGISTRY, **options: Any) -> Configuration:
    """config.build_configuration with the methods of anonymizer.methods (or others)."""
    return _build_configuration(raw, methods=methods, **options)


class Engine:
    version = ENGINE_VERSION

    def __init__(
        self,
        config: Configuration,
        *,
        methods: Methods = REGISTRY,
        generated_code: bool = True,
        kind: str | None = None,
    ) -> None:
        """`generated_code=False` runs the plan with the walker's interpreter only (shapes.py
        generates no code): slower, the same output (tests compare the two). `kind`: auto, core or
        python (None: ANONYMIZER_ENGINE, else auto): whether streams run on the compiled core
        (core.py; auto: when it is installed)."""
        self.kind = choose_engine(kind)
        self.config = config
        self.parameters = config.parameters
        self.rules = compile_rules(config.rules, config.parameters, methods)
        self.minimum = config.minimum
        self.generated_code = generated_code
        self._plans: dict[str, ResourcePlanBuilder] = {}
        self._plans_lock = threading.Lock()
        self._codes = CodeCache()
        self._threads = threading.local()  # each thread's Runtime
        self._patient_scope = config.parameters.date_shift_scope == "patient"
        self._core: CoreRunner | None = None
        self._core_lock = threading.Lock()

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        *,
        keys: Mapping[str, str] | None = None,
        allow_random_keys: bool = False,
        reference_date: date | None = None,
        methods: Methods = REGISTRY,
        generated_code: bool = True,
        kind: str | None = None,
    ) -> Engine:
        return cls.from_dict(
            read_configuration_text(path),
            keys=keys,
            allow_random_keys=allow_random_keys,
            reference_date=reference_date,
            methods=methods,
            generated_code=generated_code,
            kind=kind,
        )

    @classmethod
    def from_dict(
        cls,
        config: Any,
        *,
        keys: Mapping[str, str] | None = None,
        allow_random_keys: bool = False,
        reference_date: date | None = None,
        methods: Methods = REGISTRY,
        generated_code: bool = True,
        kind: str | None = None,
    ) -> Engine:
        if isinstance(config, str):
            config = parse_json(config)
        configuration = build_configuration(
            config,
            methods=methods,
            keys=keys,
            allow_random_keys=allow_random_keys,
            reference_date=reference_date,
        )
        return cls(configuration, methods=methods, generated_code=generated_code, kind=kind)

    @property
    def reference_date(self) -> date:
        return self.parameters.reference_date

    def plan_for(self, resource_type: str) -> ResourcePlanBuilder:
        plan = self._plans.get(resource_type)
        if plan is None:
            with self._plans_lock:
                plan = self._plans.get(resource_type)
                if plan is None:
                    applicable = [rule for rule in self.rules if rule.applies_to(resource_type)]
                    plan = self._plans[resource_type] = ResourcePlanBuilder(resource_type, applicable)
        return plan

    def plans(self) -> dict[str, ResourcePlanBuilder]:
        """The resource types' plans built so far."""
        with self._plans_lock:
            return dict(self._plans)

    @property
    def core(self) -> CoreRunner | None:
        """The compiled core that streams run on, or None when this engine runs Python only."""
        if self.kind != "core":
            return None
        if self._core is None:
            with self._core_lock:
                if self._core is None:
                    self._core = CoreRunner(self)
        return self._core

    def runtime(self) -> Runtime:
        """This thread's runtime for this engine."""
        try:
            return self._threads.runtime
        except AttributeError:
            runtime = self._threads.runtime = Runtime(self._codes, generated_code=self.generated_code)
            return runtime

    def drop_reason(self, resource: dict) -> str | None:
        """Why the minimum-necessary extension keeps this resource from leaving, or None."""
        return None if self.minimum is None else self.minimum.drop_reason(resource)

    def anonymize(
        self,
        resource: dict,
        context: Context | None = None,
        *,
        source: bytes | None = None,
        selected: bool = False,
        reuse: bool = False,
    ) -> dict | None:
        """Anonymize one resource (a Bundle or a resource with contained ones included); None
        when the minimum-necessary extension drops it (`selected`: already checked).
        `source` is the JSON text it was parsed from with `jsonio.loads` (which checked its depth),
        if any: numbers orjson would not reproduce are then taken from it. A resource without
        text is checked against jsonio.MAX_DEPTH here. `reuse` (for callers that serialise the
        result at once, with a resource `jsonio.parse` read on its fast path, so without
        Decimals): the result may share objects with the input and with earlier results
        (reuse.py)."""
        if self.minimum is not None and not selected and self.drop_reason(resource):
            return None
        return self.process(resource, context, source=source, reuse=reuse)[0]

    def process(
        self,
        resource: dict,
        context: Context | None = None,
        *,
        source: bytes | None = None,
        reuse: bool = False,
    ) -> tuple[dict | None, str | None, bool]:
        """What the streaming core needs of one resource: (result, why the minimum-necessary
        extension dropped it or None, whether `processingErrors: skip` replaced it by the empty
        resource). A processing error, in a rule or in a filter, is raised under `raise`."""
        if source is None:
            jsonio.check_depth(resource)
        if self.minimum is not None:
            # Checked before the filters read it: no input text may become a summary key.
            check_resource_type(resource)
        try:
            if self.minimum is not None:
                reason = self.minimum.drop_reason(resource)
                if reason is not None:
                    return None, reason, False
            try:
                return self._anonymize(resource, context, reuse), None, False
            except jsonio.InexactNumber:
                if source is not None:
                    exact = jsonio.loads_exact(source)
                else:  # no text: floats are written in their shortest form
                    exact = jsonio.exact_floats(resource)
                return self._anonymize(exact, context, reuse=False), None, False  # Decimals: no JSON key
        except ProcessingError:
            if self.config.processing_errors == "skip":
                return empty_resource(resource["resourceType"]), None, True
            raise

    def _anonymize(self, resource: dict, context: Context | None, reuse: bool) -> dict:
        if self.minimum is not None:
            resource = self.minimum.prune(resource)
        state = ResourceState()
        state.reuse = reuse
        if context is not None:
            state.file_name = context.file_name
            state.folder_name = context.folder_name
        if self._patient_scope and type(resource) is dict:
            state.patient_id = patient_id_of(resource)
        return Walk(self.plan_for, state, self.runtime()).resource(resource)

    def anonymize_json(
        self, text: str | bytes, context: Context | None = None, *, pretty: bool = False
    ) -> str:
        """JSON text in, JSON text out (compact, or pretty as the reference's JSON mode)."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        resource = parse_document(data)
        result = self.anonymize(resource, context, source=data)
        if result is None:  # the minimum-necessary extension leaves nothing of it
            return ""
        dump = jsonio.dumps_pretty if pretty else jsonio.dumps_compact
        return dump(result).decode("utf-8")


def check_value_as(type_key: str, value: Any) -> None:
    """Raise InvalidInputError unless `value` reads as an element of the complex type (a FHIR
    type name or a backbone key such as 'Patient.contact'), as the run parses it."""
    builder = ResourcePlanBuilder("Basic", [])
    plan = builder.node(model.complex_type(type_key), frozenset(), None)
    runtime = Runtime(CodeCache(), generated_code=False)
    Walk(lambda resource_type: builder, ResourceState(), runtime).object(value, runtime.node(plan))


def check_resource_type(resource: Any) -> str:
    """The resource's type, or the fault of a document that names no R4 resource type."""
    if type(resource) is not dict:
        raise InvalidInputError("The input FHIR resource JSON is invalid.", kind="not_object")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not is_resource_type(resource_type):
        kind = "no_resource_type" if resource_type is None else "unknown_resource_type"
        raise InvalidInputError("The input FHIR resource JSON is invalid.", kind=kind)
    return resource_type


def parse_document(data: bytes) -> Any:
    """Parse JSON text; InvalidInputError (raised outside the decoder's except block, so no
    decoder error holding the text rides along as its context) when it is not JSON (`not_json`,
    `invalid_utf8`) or past the limits of jsonio (`too_deep`, `number_out_of_range`)."""
    try:
        resource = jsonio.loads(data)
    except ValueError:
        resource = _NOT_JSON
    if resource is _NOT_JSON:
        try:
            data.decode("utf-8")
            kind = "not_json"
        except UnicodeDecodeError:
            kind = "invalid_utf8"
        raise InvalidInputError("The input FHIR resource JSON is invalid.", kind=kind)
    return resource


_NOT_JSON = object()


def is_empty_resource(resource: dict) -> bool:
    """The reference's "empty element": only resourceType and meta (what `skip` produces)."""
    return set(resource) <= {"resourceType", "meta"}
