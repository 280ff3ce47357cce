"""Task forms from `camunda:formData`: one marshmallow schema per form, used by the web task page,
the REST APIs and the engine itself, so a value is validated the same way wherever it comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from engine.errors import InvalidInput

SUPPORTED_TYPES = ("string", "long", "boolean", "date", "enum")


@dataclass
class FormField:
    id: str
    label: str
    type: str
    default: Any = None
    required: bool = False
    readonly: bool = False
    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    options: list[tuple[str, str]] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_extension(cls, raw: dict) -> FormField:
        f = cls(id=raw["id"], label=raw.get("label") or raw["id"], type=raw.get("type") or "string",
                properties=dict(raw.get("properties") or {}))
        f.options = [(v["id"], v.get("name") or v["id"]) for v in raw.get("values") or []]
        for constraint in raw.get("validation") or []:
            name, config = constraint.get("name"), constraint.get("config")
            if name == "required":
                f.required = True
            elif name == "readonly":
                f.readonly = True
            elif name == "minlength":
                f.min_length = int(config)
            elif name == "maxlength":
                f.max_length = int(config)
            elif name == "min":
                f.minimum = float(config)
            elif name == "max":
                f.maximum = float(config)
        default = raw.get("defaultValue")
        if default not in (None, ""):
            try:
                f.default = f.to_python(default)
            except (ValueError, TypeError):
                f.default = default
        return f

    def to_python(self, value: Any) -> Any:
        if self.type == "long":
            return int(value)
        if self.type == "boolean":
            if isinstance(value, bool):
                return value
            return str(value).strip().lower() in ("true", "1", "on", "yes")
        if self.type == "date":
            return _parse_date(value).isoformat()
        return value

    def marshmallow_field(self) -> fields.Field:
        validators = []
        kwargs: dict[str, Any] = {"required": self.required, "allow_none": not self.required,
                                  "metadata": {"label": self.label}}
        if self.type == "long":
            if self.minimum is not None or self.maximum is not None:
                validators.append(validate.Range(min=self.minimum, max=self.maximum))
            return fields.Integer(strict=False, validate=validators, **kwargs)
        if self.type == "boolean":
            return fields.Boolean(truthy={True, "true", "1", "on", "yes"},
                                  falsy={False, "false", "0", "off", "no", ""}, **kwargs)
        if self.type == "date":
            return DateField(validate=validators, **kwargs)
        if self.type == "enum":
            return fields.String(validate=[validate.OneOf([o[0] for o in self.options])], **kwargs)
        if self.min_length is not None or self.max_length is not None:
            validators.append(validate.Length(min=self.min_length, max=self.max_length))
        if self.required:
            validators.append(validate.Length(min=1, error="必填 / required"))
        return fields.String(validate=validators, **kwargs)


def _parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%Y/%m/%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError as exc:
        raise ValueError(f"'{text}' is not a date (YYYY-MM-DD)") from exc


class DateField(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if value in (None, ""):
            return None
        try:
            return _parse_date(value).isoformat()
        except ValueError as exc:
            raise ValidationError("不是有效日期 (YYYY-MM-DD) / not a date (YYYY-MM-DD)") from exc


class TaskForm:
    def __init__(self, form_fields: list[FormField], form_key: str | None = None):
        self.fields = form_fields
        self.form_key = form_key

    @classmethod
    def from_extensions(cls, extensions: dict | None) -> TaskForm:
        extensions = extensions or {}
        return cls([FormField.from_extension(f) for f in extensions.get("formFields") or []],
                   extensions.get("formKey"))

    @classmethod
    def for_spec(cls, task_spec) -> TaskForm:
        """The form of a task spec, built once per spec (specs are shared and never change)."""
        form = getattr(task_spec, "_task_form", None)
        if form is None:
            form = cls.from_extensions(getattr(task_spec, "extensions", None))
            task_spec._task_form = form
        return form

    def schema(self) -> Schema:
        if getattr(self, "_schema", None) is not None:
            return self._schema
        declared = {f.id: f.marshmallow_field() for f in self.fields if not f.readonly}
        self._schema = Schema.from_dict(declared, name="TaskFormSchema")()
        return self._schema

    def validate(self, submitted: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
        """Values of the form's fields, typed; unknown keys pass through untouched (process
        variables a client may set, as Camunda allows). Raises InvalidInput naming each field."""
        known = {f.id for f in self.fields}
        readonly = {f.id for f in self.fields if f.readonly}
        form_part = {k: v for k, v in submitted.items() if k in known and k not in readonly}
        for f in self.fields:
            if f.type in ("string", "enum") and form_part.get(f.id) == "" and not f.required:
                form_part[f.id] = None
        try:
            loaded = self.schema().load(form_part, partial=partial)
        except ValidationError as exc:
            raise InvalidInput("表单有误 / the form has errors", fields=_flatten(exc.messages)) from exc
        extra = {k: v for k, v in submitted.items() if k not in known}
        return {**extra, **loaded}


def _flatten(messages) -> dict[str, str]:
    out = {}
    for key, value in messages.items():
        if isinstance(value, list):
            out[key] = "; ".join(str(v) for v in value)
        elif isinstance(value, dict):
            out[key] = "; ".join(f"{k}: {v}" for k, v in value.items())
        else:
            out[key] = str(value)
    return out
