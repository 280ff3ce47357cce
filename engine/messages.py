"""Messages: correlate a message from outside to the instances waiting for it (or start one at a
message start event), deliver it, and route the messages instances throw. Who may send what is
engine/access.py's rule."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.util.event import BpmnEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from engine.access import Caller, declared_senders, reachable_instance_ids
from engine.errors import Conflict, InvalidInput, NotFound
from engine.models import InstanceVariable, MessageSubscription, ProcessDefinition, ProcessInstance
from engine.store import Command, UseCase
from engine.variables import check_variables, json_safe


class Messages(UseCase):
    """Message correlation and delivery."""

    def correlate(self, message_name: str, *, business_key: str | None = None,
                  correlation_keys: Mapping[str, Any] | None = None,
                  variables: Mapping[str, Any] | None = None, user: str | None = None,
                  all_matches: bool = False, caller: Caller | None = None) -> list[dict]:
        """Deliver a message to the instances waiting for it (matched by business key and/or
        process variables), or start an instance at a message start event. Returns what was done.

        With a `caller`, only instances within their reach match (engine/access.py): one they may
        not act on is treated exactly as one that does not exist, so the answer reveals nothing.
        Without one the message comes from inside the service (the CLI, a thrown message)."""
        if not message_name:
            raise InvalidInput("messageName is required")
        variables = check_variables(variables)
        correlation_keys = dict(correlation_keys or {})
        with self.store.command() as s:
            q = select(MessageSubscription).join(
                ProcessInstance, ProcessInstance.id == MessageSubscription.instance_id).where(
                MessageSubscription.message_name == message_name, ProcessInstance.status == "active")
            if business_key is not None:
                q = q.where(ProcessInstance.business_key == business_key)
            for name, value in correlation_keys.items():
                text = str(value).lower() if isinstance(value, bool) else str(value)
                q = q.where(exists().where(InstanceVariable.instance_id == MessageSubscription.instance_id,
                                           InstanceVariable.name == name, InstanceVariable.text_value == text))
            subs = s.execute(q.order_by(MessageSubscription.id)).scalars().all()
            if caller is not None and subs:
                subs = self.reachable_subscriptions(s, subs, caller)
            if subs:
                if len({sub.instance_id for sub in subs}) > 1 and not all_matches:
                    raise Conflict(f"message '{message_name}' matches {len(subs)} waiting instances; "
                                   "give a business key or correlation keys that select one",
                                   message_name=message_name)
                results = []
                for sub in (subs if all_matches else subs[:1]):
                    results.append(self.deliver(s, sub, message_name, variables, user))
                return results
            starts = self.start_definitions(s, message_name)
            if caller is not None and not caller.sees_all:
                starts = [(d, element) for d, element in starts
                          if self.may_send(s, d.id, element, caller) is not False]
            if starts:
                out = []
                for definition, element in starts if all_matches else starts[:1]:
                    inst = self.engine.instances.start_in(s, None, definition.id, business_key, variables, user, None,
                                                          start_event=element)
                    out.append({"result_type": "ProcessDefinition", "instance": inst})
                return out
            raise NotFound(f"no instance is waiting for message '{message_name}'"
                           + (f" with business key '{business_key}'" if business_key else ""),
                           message_name=message_name)

    def reachable_subscriptions(self, s: Session, subs: list, caller: Caller) -> list:
        if caller.sees_all:
            return subs
        reachable = reachable_instance_ids(s, [sub.instance_id for sub in subs], caller)
        out = []
        for sub in subs:
            if sub.instance_id in reachable:
                out.append(sub)
                continue
            definition_id = s.execute(select(ProcessInstance.definition_id)
                                      .where(ProcessInstance.id == sub.instance_id)).scalar_one()
            if self.may_send(s, definition_id, sub.element_id, caller):
                out.append(sub)
        return out

    def may_send(self, s: Session, definition_id: str, element_id: str, caller: Caller) -> bool | None:
        """Whether the receiving element names the caller among its message senders (None when it
        declares none)."""
        spec, subprocess_specs = self.store.specs(s, self.store.definition_info(s, definition_id))
        for process in (spec, *subprocess_specs.values()):
            task_spec = process.task_specs.get(element_id)
            if task_spec is not None:
                senders = declared_senders(getattr(task_spec, "extensions", None))
                return None if senders is None else caller.named_in(senders)
        return None

    def start_definitions(self, s: Session, name: str):
        latest = {}
        for d in s.execute(select(ProcessDefinition).order_by(ProcessDefinition.key,
                                                              ProcessDefinition.version)).scalars():
            latest[d.key] = d
        out = []
        for d in latest.values():
            for sm in d.start_messages or []:
                if sm["message"] == name:
                    out.append((d, sm["element"]))
        return out

    def deliver(self, s: Session, sub: MessageSubscription, name: str, variables: dict, user) -> dict:
        loaded = self.store.load(s, sub.instance_id)
        row, definition, workflow = loaded.row, loaded.definition, loaded.workflow
        task = workflow.get_task_from_id(uuid.UUID(sub.task_id))
        if task is None or task.state != TaskState.WAITING:
            raise Conflict(f"the instance is no longer waiting for message '{name}'", instance_id=row.id)
        task.data.update(variables)
        event = BpmnEvent(MessageEventDefinition(name), payload=dict(variables))
        try:
            task.task_spec.catch(task, event)
            task.task_spec._update(task)
        except SpiffWorkflowException as exc:
            raise self.store.process_error(exc, definition) from exc
        cmd = Command(user, "message")
        cmd.events.append({"action": "message", "element_id": sub.element_id, "task_id": sub.task_id,
                           "details": {"message": name, "variables": json_safe(variables)}})
        self.store.run_engine(workflow, definition, cmd)
        self.store.save(s, loaded, cmd)
        return {"result_type": "Execution", "instance": self.store.instance_summary(row)}

    def route_thrown(self, s: Session, row, workflow: BpmnWorkflow, cmd: Command) -> None:
        """A message that an instance throws and does not catch itself goes to other instances:
        to those waiting for it with the same business key, else to a process whose message start
        event it names (the new instance is linked to this one as its parent)."""
        for event in workflow.get_events():
            ed = event.event_definition
            if not isinstance(ed, MessageEventDefinition):
                continue
            payload = event.payload if isinstance(event.payload, dict) else {}
            variables = {k: v for k, v in payload.items()
                         if isinstance(k, str) and not k.startswith("_") and not callable(v)}
            subs = []
            if row.business_key:
                subs = s.execute(select(MessageSubscription).join(
                    ProcessInstance, ProcessInstance.id == MessageSubscription.instance_id).where(
                    MessageSubscription.message_name == ed.name, ProcessInstance.status == "active",
                    ProcessInstance.business_key == row.business_key,
                    MessageSubscription.instance_id != row.id)).scalars().all()
            if subs:
                for sub in subs:
                    self.deliver(s, sub, ed.name, variables, cmd.user)
                cmd.events.append({"action": "message_sent", "details": {
                    "message": ed.name, "delivered_to": [sub.instance_id for sub in subs]}})
                continue
            starts = self.start_definitions(s, ed.name)
            business_key = variables.pop("businessKey", None)
            started = []
            for definition, element in starts:
                child = self.engine.instances.start_in(s, None, definition.id, business_key, variables, cmd.user, row.id,
                                                       start_event=element)
                started.append(child["id"])
            cmd.events.append({"action": "message_sent", "details": {"message": ed.name,
                                                                     "started": started}})
