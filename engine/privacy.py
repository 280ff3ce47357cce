"""Patient data as PIPL expects it: which process variables hold personal data, how each kind is
masked, and who sees a value in full.

Kinds and their masks::

    phone      13612342222            → 136****2222
    idNumber   110101199001011234     → 1101**********1234
    address    北京市海淀区中关村大街1号  → 北京市海淀区****
    name       张三明                  → 张*明   (only where a process declares it, see below)

Which variables hold them. Every process gets the built-in name patterns (``phone``,
``*Phone``, ``mobile``, ``idNumber``, ``*IdCard``, ``address``, ``*Address`` …, see
``DEFAULT_PATTERNS``), so a diagram nobody annotated is still protected. A process owner adds to or
corrects them in Camunda Modeler:

* on the process (General → Extension properties): ``pii.phone = complainantPhone, contact*``,
  likewise ``pii.idNumber``, ``pii.address``, ``pii.name``; ``pii.none = wardPhone`` for names
  that hold no personal data (a ward's desk phone); ``pii.patient = patientNo`` for the variable
  holding the patient's record number (default: patientNo, patientId, medicalRecordNo, recordNo),
  the key of the audit log;
* on a form field (Form → field → Properties): ``pii = phone`` (or ``idNumber``, ``address``,
  ``name``, ``none``);
* on a user task (Extension properties): ``pii.reveal = phone, complainantPhone`` — what the
  step's assignee (or, while nobody has claimed it, its candidates) sees in full: variable names or
  kinds, ``*`` for all, ``none`` for nothing but the step's own form fields. Without it a step
  needs all of the case's personal data (the caller on a callback, the complaint officer on a
  complaint).

Patient names and record numbers are not masked by default: they are how staff identify the
patient and the case (the escort's wristband check, the greeting on a callback, the task list's
search), and a name alone reveals far less than a phone, an ID number or an address. They never go
to the logs. A process that needs more (a VIP ward) declares ``pii.name``.

Who sees a value in full: the assignee or candidate of an open step that needs it, and the
integration accounts listed in ``UNMASKED_API_USERS``. Everybody else, the center director and the
administrators included (they may see every case, so full values on every page would be the
largest exposure of all), sees the mask and may reveal one value of a case they may see; a reveal is
written to the audit log.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from engine.errors import EngineError

PHONE = "phone"
ID_NUMBER = "idNumber"
ADDRESS = "address"
NAME = "name"
KINDS = (PHONE, ID_NUMBER, ADDRESS, NAME)
NOT_PERSONAL = "none"

DEFAULT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("phone", PHONE), ("*Phone", PHONE), ("phoneNumber", PHONE), ("*PhoneNumber", PHONE),
    ("mobile", PHONE), ("*Mobile", PHONE), ("telephone", PHONE), ("*Telephone", PHONE),
    ("tel", PHONE), ("*Tel", PHONE),
    ("idNumber", ID_NUMBER), ("*IdNumber", ID_NUMBER), ("idCard", ID_NUMBER), ("*IdCard", ID_NUMBER),
    ("idCardNo", ID_NUMBER), ("*IdCardNo", ID_NUMBER), ("idNo", ID_NUMBER), ("*IdNo", ID_NUMBER),
    ("identityNumber", ID_NUMBER),
    ("address", ADDRESS), ("*Address", ADDRESS), ("addr", ADDRESS), ("*Addr", ADDRESS),
)
DEFAULT_PATIENT_KEYS = ("patientNo", "patientId", "medicalRecordNo", "recordNo")

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
_B = f"{{{BPMN_NS}}}"
_C = f"{{{CAMUNDA_NS}}}"
STEP_TAGS = {f"{_B}userTask", f"{_B}manualTask", f"{_B}task", f"{_B}startEvent"}


# ----------------------------------------------------------------------------- masks ---------
def mask_phone(phone: Any) -> str:
    """138****8000: the first three and last four digits of a number, the rest hidden."""
    if phone is None or phone == "":
        return ""
    digits = re.sub(r"\D", "", str(phone))
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if len(digits) >= 8:
        return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
    if len(digits) >= 3:
        return digits[:1] + "*" * (len(digits) - 2) + digits[-1:]
    return "*" * len(digits)


def mask_id_number(value: Any) -> str:
    """1101**********1234: the region code and the last four characters of a 身份证 number."""
    text = re.sub(r"\s", "", str(value or ""))
    if len(text) >= 12:
        return text[:4] + "*" * (len(text) - 8) + text[-4:]
    if len(text) >= 4:
        return text[:1] + "*" * (len(text) - 2) + text[-1:]
    return "*" * max(len(text), 4)


def mask_address(value: Any) -> str:
    """北京市海淀区****: the address down to its district (区/县/旗), else its city or province;
    an address without those (written in English) keeps its last comma-separated part."""
    text = str(value or "").strip()
    if not text:
        return ""
    kept = ""
    for m in re.finditer(r"[区县旗市州省]", text[:16]):
        kept = text[:m.end()]
        if m.group(0) in "区县旗":
            break
    if not kept:
        parts = [p.strip() for p in re.split(r"[,，]", text) if p.strip()]
        kept = parts[-1] if len(parts) > 1 else ""
    if not kept or len(kept) >= len(text):
        kept = text[:max(1, len(text) // 3)]
    return kept + "****"


def mask_name(value: Any) -> str:
    """张*明 / 李*: the family name and (for three or more characters) the last one."""
    text = str(value or "").strip()
    if len(text) <= 1:
        return "*" if text else ""
    if len(text) == 2:
        return text[0] + "*"
    return text[0] + "*" * (len(text) - 2) + text[-1]


MASKS = {PHONE: mask_phone, ID_NUMBER: mask_id_number, ADDRESS: mask_address, NAME: mask_name}


def mask(kind: str, value: Any) -> Any:
    """The masked form of a value of this kind (None and "" stay as they are; structured values
    become ****)."""
    if value is None or value == "":
        return value
    if isinstance(value, dict | list | tuple):
        return "****"
    if isinstance(value, bool):
        return value
    return MASKS.get(kind, mask_name)(value)


_PHONE_IN_TEXT = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?!\d)")
_ID_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def scrub_text(text: str) -> str:
    """Mobile and 身份证 numbers inside free text (a log line, a query string) masked."""
    text = _ID_IN_TEXT.sub(lambda m: mask_id_number(m.group(0)), text)
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


_REQUEST_LINE = re.compile(r'((?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) [^?\s"]*)\?([^\s"]*)')


def _mask_query(m: re.Match) -> str:
    names = [pair.split("=", 1)[0] for pair in m.group(2).split("&") if pair]
    return m.group(1) + "?" + "&".join(f"{name}=…" for name in names)


def scrub_log_line(text: str) -> str:
    """A log line without patient data: the values of a request line's query string dropped
    (``GET /?q=… HTTP/1.1``: a search may be a phone number or a name), mobile and ID numbers
    masked."""
    return scrub_text(_REQUEST_LINE.sub(_mask_query, text))


class PatientDataFilter(logging.Filter):
    """Scrubs every record it sees (scrub_log_line), the traceback included."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        clean = scrub_log_line(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        return True


ACCESS_LOGGERS = ("werkzeug", "gunicorn.access", "gunicorn.error")


def install_log_filters(root: logging.Logger | None = None) -> PatientDataFilter:
    """The filter on the access loggers (werkzeug's request lines, gunicorn's) and on the root
    logger's handlers (every other record that reaches them). Idempotent."""
    root = root or logging.getLogger()
    found = next((f for h in root.handlers for f in h.filters if isinstance(f, PatientDataFilter)), None)
    patient_filter = found or PatientDataFilter()
    for handler in root.handlers:
        if patient_filter not in handler.filters:
            handler.addFilter(patient_filter)
    for name in ACCESS_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, PatientDataFilter) for f in logger.filters):
            logger.addFilter(patient_filter)
    return patient_filter


# ------------------------------------------------------------------------- the policy --------
def _names(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in re.split(r"[,，;\s]+", text or "") if p.strip())


@dataclass(frozen=True)
class StepNeed:
    """What one step shows its assignee in full: everything, or these names and kinds."""

    everything: bool = True
    names: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()


ALL = StepNeed()


@dataclass
class PiiPolicy:
    """The personal-data declarations of one process definition."""

    declared: dict[str, str] = field(default_factory=dict)  # exact name → kind
    declared_patterns: tuple[tuple[str, str], ...] = ()
    not_personal: tuple[str, ...] = ()
    patient_keys: tuple[str, ...] = DEFAULT_PATIENT_KEYS
    steps: dict[str, StepNeed] = field(default_factory=dict)
    step_fields: dict[str, frozenset[str]] = field(default_factory=dict)
    _kinds: dict[str, str | None] = field(default_factory=dict, repr=False)

    def kind_of(self, name: str) -> str | None:
        """The kind of personal data a variable holds, or None."""
        if name in self._kinds:
            return self._kinds[name]
        kind = self._resolve(name)
        if len(self._kinds) < 10_000:
            self._kinds[name] = kind
        return kind

    def _resolve(self, name: str) -> str | None:
        if name in self.declared:
            kind = self.declared[name]
            return None if kind == NOT_PERSONAL else kind
        if any(fnmatch.fnmatchcase(name, p) for p in self.not_personal):
            return None
        for pattern, kind in self.declared_patterns + DEFAULT_PATTERNS:
            if fnmatch.fnmatchcase(name, pattern):
                return kind
        return None

    def personal(self, names: Iterable[str]) -> dict[str, str]:
        return {n: k for n in names if (k := self.kind_of(n))}

    def step_needs(self, element_id: str, name: str) -> bool:
        """Does this step (a user task's id) show this variable to its assignee in full?"""
        if name in self.step_fields.get(element_id, ()):
            return True  # a field of the step's own form: the form shows and edits it
        need = self.steps.get(element_id, ALL)
        return need.everything or name in need.names or self.kind_of(name) in need.kinds

    def patient(self, variables: Mapping[str, Any]) -> str | None:
        """The patient's record number, when the case has one."""
        for key in self.patient_keys:
            value = variables.get(key)
            if value not in (None, "") and not isinstance(value, dict | list):
                return str(value)
        return None


DEFAULT_POLICY = PiiPolicy()


def _properties(element) -> dict[str, str]:
    """camunda:properties of an element (name or id → value), its own extension elements only."""
    out: dict[str, str] = {}
    ext = element.find(f"{_B}extensionElements")
    if ext is None:
        return out
    for props in ext.findall(f"{_C}properties"):
        for p in props.findall(f"{_C}property"):
            key = p.get("name") or p.get("id")
            if key:
                out[key.strip()] = (p.get("value") or "").strip()
    return out


def _form_fields(element) -> list:
    ext = element.find(f"{_B}extensionElements")
    if ext is None:
        return []
    return [f for data in ext.findall(f"{_C}formData") for f in data.findall(f"{_C}formField")]


def policy_from_bpmn(xml: bytes, process_key: str | None = None) -> PiiPolicy:
    """Read the declarations of the process `process_key` (all processes of the file when it has
    no process of that id: a collaboration, a call activity's target)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    root = etree.fromstring(xml, parser=parser)
    processes = root.findall(f"{_B}process")
    chosen = [p for p in processes if p.get("id") == process_key] or processes
    policy = PiiPolicy()
    patterns: list[tuple[str, str]] = []
    not_personal: list[str] = []
    patient_keys: list[str] = []
    for process in chosen:
        for key, value in _properties(process).items():
            if not key.startswith("pii."):
                continue
            kind = key[4:]
            if kind == "patient":
                patient_keys.extend(_names(value))
            elif kind == NOT_PERSONAL:
                not_personal.extend(_names(value))
            elif kind in KINDS:
                for name in _names(value):
                    if any(c in name for c in "*?["):
                        patterns.append((name, kind))
                    else:
                        policy.declared[name] = kind
        for element in process.iter():
            if not isinstance(element.tag, str):
                continue
            fields = _form_fields(element) if element.tag in STEP_TAGS else []
            for f in fields:
                declared = _properties_of_field(f).get("pii")
                if declared:
                    kind = declared.strip()
                    if kind in KINDS or kind == NOT_PERSONAL:
                        policy.declared[f.get("id")] = kind
            if element.tag != f"{_B}userTask" and element.tag != f"{_B}manualTask":
                continue
            element_id = element.get("id")
            if fields:
                policy.step_fields[element_id] = frozenset(f.get("id") for f in fields if f.get("id"))
            reveal = _properties(element).get("pii.reveal")
            if reveal is not None:
                wanted = _names(reveal)
                if "*" in wanted:
                    policy.steps[element_id] = ALL
                else:
                    wanted = tuple(w for w in wanted if w != NOT_PERSONAL)
                    policy.steps[element_id] = StepNeed(
                        everything=False, names=frozenset(w for w in wanted if w not in KINDS),
                        kinds=frozenset(w for w in wanted if w in KINDS))
    policy.declared_patterns = tuple(patterns)
    policy.not_personal = tuple(not_personal)
    if patient_keys:
        policy.patient_keys = tuple(patient_keys) + DEFAULT_PATIENT_KEYS
    return policy


def _properties_of_field(f) -> dict[str, str]:
    out: dict[str, str] = {}
    for props in f.findall(f"{_C}properties"):
        for p in props.findall(f"{_C}property"):
            key = p.get("id") or p.get("name")
            if key:
                out[key.strip()] = (p.get("value") or "").strip()
    return out


class PolicyCache:
    """Policies by definition id (a definition never changes once deployed)."""

    def __init__(self, size: int = 256):
        self.size = size
        self._entries: OrderedDict[str, PiiPolicy] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, engine, definition_id: str | None) -> PiiPolicy:
        if not definition_id:
            return DEFAULT_POLICY
        with self._lock:
            found = self._entries.get(definition_id)
            if found is not None:
                self._entries.move_to_end(definition_id)
                return found
        try:
            _name, xml = engine.definition_xml(definition_id)
            policy = policy_from_bpmn(xml, definition_id.split(":", 1)[0])
        except (EngineError, etree.XMLSyntaxError, ValueError):  # deleted or unreadable: the defaults protect
            policy = PiiPolicy()
        with self._lock:
            self._entries[definition_id] = policy
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return policy


# ---------------------------------------------------------------------------- viewers --------
@dataclass(frozen=True)
class Viewer:
    username: str
    groups: tuple[str, ...] = ()
    unmasked: bool = False  # an integration account listed in UNMASKED_API_USERS


def step_is_theirs(task: Mapping[str, Any], viewer: Viewer) -> bool:
    """An open step this viewer works on: assigned to them, or (unclaimed) offered to them."""
    if task.get("status", "open") != "open":
        return False
    if task.get("assignee"):
        return task["assignee"] == viewer.username
    if viewer.username in (task.get("candidate_users") or []):
        return True
    return bool(set(task.get("candidate_groups") or []) & set(viewer.groups))


class Masker:
    """Masks the variables of one case for one viewer."""

    def __init__(self, policy: PiiPolicy, viewer: Viewer, tasks: Iterable[Mapping[str, Any]] = ()):
        self.policy = policy
        self.viewer = viewer
        self.steps = [t.get("element_id") for t in tasks if step_is_theirs(t, viewer)]

    def kind_of(self, name: str) -> str | None:
        return self.policy.kind_of(name)

    def is_masked(self, name: str) -> bool:
        if self.viewer.unmasked:
            return False
        if self.policy.kind_of(name) is None:
            return False
        return not any(self.policy.step_needs(step, name) for step in self.steps if step)

    def patient(self, variables: Mapping[str, Any]) -> str | None:
        return self.policy.patient(variables)

    def value(self, name: str, value: Any) -> Any:
        if value is None or value == "" or not self.is_masked(name):
            return value
        return mask(self.policy.kind_of(name), value)

    def values(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        return {name: self.value(name, value) for name, value in variables.items()}

    def typed(self, variables: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """The engine's {name: {"value", "type"}} with masked values as strings."""
        out = {}
        for name, v in variables.items():
            value = v.get("value")
            if value not in (None, "") and self.is_masked(name):
                out[name] = {**v, "value": mask(self.policy.kind_of(name), value), "type": "String"}
            else:
                out[name] = dict(v)
        return out

    def history(self, entries: Iterable[Mapping[str, Any]]) -> list[dict]:
        """History entries with the values in their details masked (a completion's submitted
        variables, a variables event's changes, a message's payload: one level of nesting)."""
        out = []
        for h in entries:
            details = h.get("details")
            if isinstance(details, dict) and details:
                details = self.values({k: (self.values(v) if isinstance(v, dict) else v)
                                       for k, v in details.items()})
                h = {**h, "details": details}
            out.append(dict(h))
        return out


