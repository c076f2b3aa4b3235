"""Responses checked against the OpenAPI document the app serves: the status must be declared for the
operation, the media type declared for that status, the body valid against the declared schema (JSON
Schema 2020-12, closed objects, uuid formats) and the required response headers present."""

from __future__ import annotations

import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:openapi"


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


class OpenApiDocument:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(BASE, resource)
        self._paths = [
            (re.compile("^" + re.sub(r"\{[^}/]+\}", "[^/]+", path) + "$"), path) for path in document["paths"]
        ]
        self.checked: list[tuple[str, str, int]] = []

    def validate(self, instance: Any, pointer: str) -> None:
        """Raises ValidationError unless ``instance`` matches the schema at ``pointer`` in the document."""
        validator = Draft202012Validator(
            {"$ref": f"{BASE}#{pointer}"},
            registry=self._registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        validator.validate(instance)

    def validate_component(self, instance: Any, name: str) -> None:
        self.validate(instance, _pointer("components", "schemas", name))

    def template_of(self, path: str) -> str:
        matches = [template for pattern, template in self._paths if pattern.match(path)]
        assert matches, f"{path} is not in the document"
        return min(matches, key=lambda t: t.count("{"))  # a literal path wins over a template

    async def check(self, response: httpx.Response) -> None:
        """An httpx response hook: check the answer against its operation's declaration."""
        method = response.request.method.lower()
        template = self.template_of(response.request.url.path)
        declared = self.document["paths"][template][method]["responses"]
        status = str(response.status_code)
        assert status in declared, f"{method.upper()} {template} answered {status}: not declared"
        media = response.headers.get("content-type", "").split(";")[0]
        assert media in declared[status].get("content", {}), f"{template} {status}: {media} not declared"
        for header, spec in declared[status].get("headers", {}).items():
            if spec.get("required"):
                assert header in response.headers, f"{template} {status}: header {header} missing"
        if media == "application/json":
            await response.aread()
            pointer = _pointer("paths", template, method, "responses", status, "content", media, "schema")
            self.validate(response.json(), pointer)
        self.checked.append((method.upper(), template, response.status_code))
