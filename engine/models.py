"""SQLAlchemy models: the engine's tables.

Instance state is SpiffWorkflow's serialization without the spec (the spec is stored once per
definition version). Tasks, timers and message subscriptions are projections kept in step with the
state in the same transaction, so that lists and the scheduler never load instances.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    types,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(types.TypeDecorator):
    """Stores aware datetimes in UTC and always returns aware UTC datetimes (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


BigIntId = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict: JSON, list: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    locale: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime]

    groups: Mapped[list[Group]] = relationship(secondary="user_groups", back_populates="members",
                                                 lazy="selectin")


class Group(Base):
    """A candidate group in diagrams, and a role (kind='role': admin, process_owner, director)."""

    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str | None] = mapped_column(String(128), nullable=True)
    kind: Mapped[str] = mapped_column(String(16), default="unit")

    members: Mapped[list[User]] = relationship(secondary="user_groups", back_populates="groups")


class UserGroup(Base):
    __tablename__ = "user_groups"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    deployed_at: Mapped[datetime]
    deployed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)

    resources: Mapped[list[Resource]] = relationship(back_populates="deployment",
                                                       cascade="all, delete-orphan")


class Resource(Base):
    __tablename__ = "resources"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)

    deployment: Mapped[Deployment] = relationship(back_populates="resources")


class ProcessDefinition(Base):
    __tablename__ = "process_definitions"
    __table_args__ = (UniqueConstraint("key", "version", name="uq_process_definition_version"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"))
    resource_name: Mapped[str] = mapped_column(String(255))
    content_hash: Mapped[str] = mapped_column(String(64))
    # Serialized SpiffWorkflow spec (top process and the sub-process specs it calls), stored once.
    spec: Mapped[bytes] = mapped_column(LargeBinary)
    # Timer start events, as [{"element": id, "kind": ..., "expression": ...}] for the scheduler.
    start_timers: Mapped[list] = mapped_column(JSON, default=list)
    # Message start events: [{"element": id, "message": name}].
    start_messages: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]


class DecisionDefinition(Base):
    __tablename__ = "decision_definitions"
    __table_args__ = (UniqueConstraint("key", "version", name="uq_decision_definition_version"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), index=True)
    version: Mapped[int] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    resource_id: Mapped[str] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"))
    resource_name: Mapped[str] = mapped_column(String(255))
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class ProcessInstance(Base):
    __tablename__ = "process_instances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    definition_id: Mapped[str] = mapped_column(ForeignKey("process_definitions.id"), index=True)
    process_key: Mapped[str] = mapped_column(String(255), index=True)
    business_key: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    # active, completed, cancelled
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    # zlib-compressed JSON of the workflow without its spec
    state: Mapped[bytes] = mapped_column(LargeBinary)
    # optimistic lock: every save increments it and checks the value it loaded
    version: Mapped[int] = mapped_column(Integer, default=1)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    started_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # the instance this one was started from (a complaint raised in a callback)
    parent_instance_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    # text a user searches by: business key, patient name and number
    search_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    # summary variables shown in lists without loading the state
    summary: Mapped[dict] = mapped_column(JSON, default=dict)


class InstanceVariable(Base):
    """Top-level process variables, kept in step with the state for queries and correlation."""

    __tablename__ = "instance_variables"
    __table_args__ = (Index("ix_instance_variables_name_text", "name", "text_value"),)

    instance_id: Mapped[str] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"),
                                             primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[dict | list | str | int | float | bool | None] = mapped_column(JSON, nullable=True)
    # the value as text when it is a scalar, for equality queries
    text_value: Mapped[str | None] = mapped_column(String(512), nullable=True)
    type_name: Mapped[str] = mapped_column(String(16))


class Task(Base):
    """A human task (a READY user task), projected from the instance state."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_status_due", "status", "due_at"),
        Index("ix_tasks_status_assignee", "status", "assignee"),
        # the queue of a group: open, unclaimed, by due time
        Index("ix_tasks_queue", "status", "assignee", "due_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"),
                                             index=True)
    definition_id: Mapped[str] = mapped_column(String(128))
    process_key: Mapped[str] = mapped_column(String(255), index=True)
    business_key: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    element_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # open, completed, cancelled
    status: Mapped[str] = mapped_column(String(16), default="open")
    assignee: Mapped[str | None] = mapped_column(String(64), nullable=True)
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    candidate_users: Mapped[list] = mapped_column(JSON, default=list)
    candidate_groups: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]
    due_at: Mapped[datetime | None] = mapped_column(nullable=True)
    follow_up_at: Mapped[datetime | None] = mapped_column(nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=50)
    form_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # on_time, due_soon, overdue (kept by the scheduler)
    sla_state: Mapped[str] = mapped_column(String(16), default="on_time")
    completed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    completed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    search_text: Mapped[str | None] = mapped_column(Text, nullable=True)


class TaskCandidate(Base):
    """One row per candidate user or group of an open task: the index the task list filters on."""

    __tablename__ = "task_candidates"
    __table_args__ = (Index("ix_task_candidates_lookup", "kind", "ident", "task_id"),
                      Index("ix_task_candidates_queue", "kind", "ident", "claimed", "task_id"))

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # user | group
    ident: Mapped[str] = mapped_column(String(64), primary_key=True)
    # the task has an assignee (kept in step by claim/unclaim/assign; rows exist only for open tasks)
    claimed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Timer(Base):
    """A pending timer. The table is the truth the scheduler fires from."""

    __tablename__ = "timers"
    __table_args__ = (Index("ix_timers_status_due", "status", "due_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # null for a timer start event (it starts a new instance of definition_id)
    instance_id: Mapped[str | None] = mapped_column(
        ForeignKey("process_instances.id", ondelete="CASCADE"), nullable=True, index=True)
    definition_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    element_id: Mapped[str] = mapped_column(String(255))
    due_at: Mapped[datetime]
    # pending, fired
    status: Mapped[str] = mapped_column(String(16), default="pending")
    fired_count: Mapped[int] = mapped_column(Integer, default=0)
    schedule: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class MessageSubscription(Base):
    __tablename__ = "message_subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"),
                                             index=True)
    task_id: Mapped[str] = mapped_column(String(36))
    element_id: Mapped[str] = mapped_column(String(255))
    message_name: Mapped[str] = mapped_column(String(255), index=True)
    business_key: Mapped[str | None] = mapped_column(String(255), nullable=True)


class HistoryEvent(Base):
    """Append-only record of every command: who, when, what, which variables changed."""

    __tablename__ = "history"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    instance_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    at: Mapped[datetime]
    user: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    element_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    element_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class CalendarDay(Base):
    """An administrator's override of the Chinese calendar: a published year, a local closure."""

    __tablename__ = "calendar_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    is_working: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(128), default="")


class CalendarYear(Base):
    """A year whose working days an administrator has entered completely (confirmed)."""

    __tablename__ = "calendar_years"

    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    note: Mapped[str] = mapped_column(String(255), default="")


# -- external tasks, incidents and the message outbox (engine/external.py, engine/notify.py) ------

class ExternalTask(Base):
    """A service/send task with camunda:type="external": projected from the instance state while it
    is READY, fetched and locked by workers. Closed rows keep their last state for the record."""

    __tablename__ = "external_tasks"
    __table_args__ = (
        Index("ix_external_tasks_fetch", "state", "topic", "priority", "created_at"),
        Index("ix_external_tasks_worker", "worker_id"),
    )

    # the SpiffWorkflow task id
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("process_instances.id", ondelete="CASCADE"),
                                             index=True)
    definition_id: Mapped[str] = mapped_column(String(128))
    process_key: Mapped[str] = mapped_column(String(255))
    business_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    activity_id: Mapped[str] = mapped_column(String(255))
    activity_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    topic: Mapped[str] = mapped_column(String(255))
    priority: Mapped[int] = mapped_column(BigInteger, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lock_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # None until a worker reports a failure (Camunda's semantics); 0 = no retries left (incident)
    retries: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_details: Mapped[str | None] = mapped_column(Text, nullable=True)
    # the variables a worker may fetch: {name: {"value", "type", "local"}}, kept in step with the state
    variables: Mapped[dict] = mapped_column(JSON, default=dict)
    # camunda:properties of the element (Camunda's extensionProperties)
    properties: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime]
    # open, completed, error (a BPMN error was thrown), cancelled
    state: Mapped[str] = mapped_column(String(16), default="open")
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Incident(Base):
    """Something an administrator must look at: an external task out of retries, a BPMN error no
    event catches, a completion the process could not continue from. Resolved, never deleted."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_state_created", "state", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # Camunda's incident type: failedExternalTask
    incident_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    instance_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    definition_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    process_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    business_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tenant_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    activity_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # the external task's id (Camunda's "configuration")
    configuration: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    topic: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # open, resolved (retried or completed), deleted (the task or instance went away)
    state: Mapped[str] = mapped_column(String(16), default="open")
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolved_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    annotation: Mapped[str | None] = mapped_column(Text, nullable=True)


class OutboxMessage(Base):
    """Every notification the notify worker sent or tried to send (SMS), with its result."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_created", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    channel: Mapped[str] = mapped_column(String(16), default="sms")
    gateway: Mapped[str] = mapped_column(String(32))
    # the full number is needed to send; pages and logs only ever show recipient_masked
    recipient: Mapped[str] = mapped_column(String(64))
    recipient_masked: Mapped[str] = mapped_column(String(64))
    template: Mapped[str | None] = mapped_column(String(64), nullable=True)
    text: Mapped[str] = mapped_column(Text)
    # sent, failed
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    external_task_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    instance_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    business_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    process_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    activity_id: Mapped[str | None] = mapped_column(String(255), nullable=True)


class AuditEvent(Base):
    """Append-only audit of access to patient data and of security events (sign-ins, lockouts,
    masked values shown, exports, erasures), kept apart from the process history: it survives the
    erasure of the case it names."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    user: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    resource_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    instance_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    # the patient the read concerned (record number), so an admin can filter "who saw this patient"
    patient: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class UserSession(Base):
    """A signed-in web session. The browser's cookie carries a random id; only its SHA-256 is
    stored, so a copy of this table signs nobody in. A session is live while it is not revoked
    (sign-out, deactivation, password reset), not idle past the timeout and its account is active."""

    __tablename__ = "user_sessions"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_user_sessions_token_hash"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # logout | deactivated | password_reset | admin
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class LoginFailure(Base):
    """Failed sign-ins of one account name (web form and HTTP Basic alike) in the current window,
    and the temporary lock they caused. In the database so that every worker sees the same lock;
    names that are no account are counted too, so a lock says nothing about which names exist."""

    __tablename__ = "login_failures"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]
    locked_until: Mapped[datetime | None] = mapped_column(nullable=True)
