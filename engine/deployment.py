"""Deploying BPMN and DMN files: parse, check, version, store — all files or none."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.start_event import StartEvent as StartEventMixin
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.dialect import dmn
from engine.dialect.checks import BpmnChecker
from engine.dialect.parser import NSMAP, DialectParser, parse_xml
from engine.errors import DeploymentError
from engine.models import DecisionDefinition, Deployment, ProcessDefinition, Resource

BPMN_SUFFIXES = (".bpmn", ".bpmn20.xml")
DMN_SUFFIXES = (".dmn", ".dmn11.xml")


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


# The same caps on every way in (process pages, /engine-rest/deployment/create, the CLI): a
# deployment is a handful of diagrams, and the largest hospital diagram is well under 200 KB.
MAX_DEPLOY_FILES = 20
MAX_DEPLOY_FILE_BYTES = 2 * 1024 * 1024


def check_upload(files: list[tuple[str, bytes]]) -> None:
    """Refuse a deployment with too many files or a file too large, naming it."""
    if len(files) > MAX_DEPLOY_FILES:
        raise DeploymentError(f"a deployment holds at most {MAX_DEPLOY_FILES} files; {len(files)} were given")
    for name, content in files:
        if len(content) > MAX_DEPLOY_FILE_BYTES:
            raise DeploymentError(f"the file is larger than {MAX_DEPLOY_FILE_BYTES // (1024 * 1024)} MB",
                                  file=name)

@dataclass
class ParsedProcess:
    key: str
    name: str | None
    spec: object
    subprocess_specs: dict
    start_timers: list
    start_messages: list


@dataclass
class ParsedFile:
    name: str
    content: bytes
    hash: str
    kind: str  # bpmn | dmn
    processes: list[ParsedProcess] = field(default_factory=list)
    decisions: list[tuple[str, str | None]] = field(default_factory=list)


@dataclass
class DeploymentResult:
    deployment_id: str | None
    name: str
    created: bool
    process_definitions: list[dict] = field(default_factory=list)
    decision_definitions: list[dict] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def file_kind(name: str) -> str | None:
    lower = name.lower()
    if lower.endswith(BPMN_SUFFIXES):
        return "bpmn"
    if lower.endswith(DMN_SUFFIXES):
        return "dmn"
    return None


class Deployer:
    def __init__(self, engine):
        self.engine = engine

    # -- parsing and checking (no database writes) ---------------------------------------------
    def parse_files(self, session: Session, files: list[tuple[str, bytes]]) -> list[ParsedFile]:
        parsed: list[ParsedFile] = []
        names = set()
        for name, content in files:
            if name in names:
                raise DeploymentError("the same file name is given twice", file=name)
            names.add(name)
            kind = file_kind(name)
            if kind is None:
                raise DeploymentError("only .bpmn and .dmn files can be deployed", file=name)
            if isinstance(content, str):
                content = content.encode("utf-8")
            parsed.append(ParsedFile(name, content, content_hash(content), kind))

        for pf in parsed:
            if pf.kind == "dmn":
                pf.decisions = self._parse_dmn(pf)
        bpmn_files = [pf for pf in parsed if pf.kind == "bpmn"]
        if bpmn_files:
            self._parse_bpmn(session, bpmn_files)
        return parsed

    def _parse_dmn(self, pf: ParsedFile) -> list[tuple[str, str | None]]:
        try:
            model = dmn.parse_dmn(pf.content, pf.name)
        except dmn.DmnDefinitionError as exc:
            raise DeploymentError(getattr(exc, "reason", str(exc)), file=pf.name,
                                  element=getattr(exc, "element_id", None),
                                  line=getattr(exc, "line", None)) from exc
        if not model.decisions:
            raise DeploymentError("the file holds no decision", file=pf.name)
        return [(d.id, d.name) for d in model.decisions.values()]

    def _parse_bpmn(self, session: Session, files: list[ParsedFile]) -> None:
        parser = DialectParser()
        roots = {}
        for pf in files:
            try:
                root = parse_xml(pf.content, pf.name)
            except ValidationException as exc:
                raise DeploymentError(str(exc.args[0]) if exc.args else "not well-formed XML", file=pf.name,
                                      line=exc.line_number or None) from exc
            if root.tag != "{%s}definitions" % NSMAP["bpmn"]:
                raise DeploymentError("not a BPMN 2.0 file (the root element must be bpmn:definitions)",
                                      file=pf.name, line=root.sourceline)
            BpmnChecker(pf.name, self.engine.settings.tz, self.engine.function_names(),
                        timedelta(seconds=self.engine.settings.timer_min_interval)).check(root)
            roots[pf.name] = root
            try:
                parser.add_bpmn_xml(root, pf.name)
            except ValidationException as exc:
                raise self._validation_error(exc, pf.name) from exc
            except DeploymentError:
                raise
            except Exception as exc:  # the parser's own errors carry no element
                raise DeploymentError(f"cannot be parsed: {exc}", file=pf.name) from exc

        for pf in files:
            root = roots[pf.name]
            process_nodes = root.findall("{%s}process" % NSMAP["bpmn"])
            executable = [p for p in process_nodes if p.get("isExecutable", "false").lower() == "true"]
            if not executable:
                raise DeploymentError("no executable process (set isExecutable=\"true\")", file=pf.name)
            for node in executable:
                key = node.get("id")
                pf.processes.append(self._build_process(session, parser, pf.name, key, node.get("name")))

    def _build_process(self, session, parser, filename, key, name) -> ParsedProcess:
        try:
            spec = parser.get_spec(key)
            subprocess_specs = self._subprocess_specs(session, parser, key, filename)
        except ValidationException as exc:
            raise self._validation_error(exc, filename) from exc
        except DeploymentError:
            raise
        except Exception as exc:
            raise DeploymentError(f"process '{key}' cannot be parsed: {exc}", file=filename) from exc

        start_timers, start_messages = [], []
        for ts in spec.task_specs.values():
            if isinstance(ts, StartEventMixin):
                ed = ts.event_definition
                if isinstance(ed, TimerEventDefinition):
                    start_timers.append({"element": ts.bpmn_id, "kind": type(ed).kind,
                                         "expression": ed.expression})
                elif isinstance(ed, MessageEventDefinition):
                    start_messages.append({"element": ts.bpmn_id, "message": ed.name})
        return ParsedProcess(key, name, spec, subprocess_specs, start_timers, start_messages)

    def _subprocess_specs(self, session, parser, key, filename) -> dict:
        """Call activities may name processes deployed earlier: bring their newest version in."""
        added = set()
        while True:
            specs = parser.get_subprocess_specs(key, require_call_activity_specs=False)
            missing = [name for name, sp in specs.items() if sp is None and name not in added]
            if not missing:
                break
            for name in missing:
                added.add(name)
                row = session.execute(
                    select(ProcessDefinition).where(ProcessDefinition.key == name)
                    .order_by(ProcessDefinition.version.desc()).limit(1)).scalar_one_or_none()
                if row is None:
                    continue
                resource = session.get(Resource, row.resource_id)
                parser.add_bpmn_xml(parse_xml(resource.content, resource.name), resource.name)
        unresolved = [name for name, sp in specs.items() if sp is None]
        if unresolved:
            raise DeploymentError(
                f"call activity refers to process '{unresolved[0]}', which is neither in this deployment "
                "nor deployed", file=filename)
        return specs

    @staticmethod
    def _validation_error(exc: ValidationException, filename: str) -> DeploymentError:
        message = exc.args[0] if exc.args else str(exc)
        return DeploymentError(str(message), file=getattr(exc, "file_name", None) or filename,
                               element=getattr(exc, "id", None) or None,
                               line=getattr(exc, "line_number", None) or None)

    # -- storing -------------------------------------------------------------------------------
    def deploy(self, session: Session, files: list[tuple[str, bytes]], *, name: str, source: str | None,
               user: str | None, changed_only: bool, tenant_id: str | None = None) -> DeploymentResult:
        if not files:
            raise DeploymentError("nothing to deploy: no files were given")
        check_upload(files)
        parsed = self.parse_files(session, files)
        now = self.engine.clock.now()

        new_processes, new_decisions, unchanged = [], [], []
        for pf in parsed:
            for proc in pf.processes:
                latest = self._latest(session, ProcessDefinition, proc.key)
                if changed_only and latest is not None and latest.content_hash == pf.hash:
                    unchanged.append(latest.id)
                else:
                    new_processes.append((pf, proc, (latest.version + 1) if latest else 1))
            for key, dname in pf.decisions:
                latest = self._latest(session, DecisionDefinition, key)
                if changed_only and latest is not None and latest.content_hash == pf.hash:
                    unchanged.append(latest.id)
                else:
                    new_decisions.append((pf, key, dname, (latest.version + 1) if latest else 1))

        if not new_processes and not new_decisions:
            # Nothing changed: answer with the deployment that holds the current versions.
            existing = self._deployment_of(session, unchanged)
            return DeploymentResult(existing, name, False, unchanged=unchanged)

        deployment = Deployment(id=str(uuid.uuid4()), name=name, source=source, tenant_id=tenant_id,
                                deployed_at=now, deployed_by=user)
        session.add(deployment)
        resources = {}
        for pf in parsed:
            res = Resource(id=str(uuid.uuid4()), deployment_id=deployment.id, name=pf.name,
                           content=pf.content, content_hash=pf.hash)
            session.add(res)
            resources[pf.name] = res
        session.flush()

        result = DeploymentResult(deployment.id, name, True, unchanged=unchanged)
        serializer = self.engine.serializer
        for pf, proc, version in new_processes:
            definition_id = f"{proc.key}:{version}:{uuid.uuid4()}"
            row = ProcessDefinition(
                id=definition_id, key=proc.key, version=version, name=proc.name,
                deployment_id=deployment.id, resource_id=resources[pf.name].id, resource_name=pf.name,
                content_hash=pf.hash, spec=serializer.dump_spec(proc.spec, proc.subprocess_specs),
                start_timers=proc.start_timers, start_messages=proc.start_messages, created_at=now)
            session.add(row)
            result.process_definitions.append({"id": definition_id, "key": proc.key, "version": version,
                                               "name": proc.name, "resource": pf.name})
        for pf, key, dname, version in new_decisions:
            definition_id = f"{key}:{version}:{uuid.uuid4()}"
            session.add(DecisionDefinition(
                id=definition_id, key=key, version=version, name=dname, deployment_id=deployment.id,
                resource_id=resources[pf.name].id, resource_name=pf.name, content_hash=pf.hash,
                created_at=now))
            result.decision_definitions.append({"id": definition_id, "key": key, "version": version,
                                                "name": dname, "resource": pf.name})
        session.flush()
        return result

    @staticmethod
    def _latest(session, model, key):
        return session.execute(select(model).where(model.key == key).order_by(model.version.desc())
                               .limit(1)).scalar_one_or_none()

    @staticmethod
    def _deployment_of(session, definition_ids: list[str]) -> str | None:
        for definition_id in definition_ids:
            for model in (ProcessDefinition, DecisionDefinition):
                row = session.get(model, definition_id)
                if row is not None:
                    return row.deployment_id
        return None


def workflow_files(directory: Path) -> list[tuple[str, bytes]]:
    """The .bpmn and .dmn files under workflows/ (bpmn/ and dmn/), sorted by name."""
    files = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and file_kind(path.name):
            files.append((path.name, path.read_bytes()))
    return files
