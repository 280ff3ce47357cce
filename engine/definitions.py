"""Deployments and process definitions: deploy BPMN/DMN files, list and read definitions,
deployments and their resources, and delete a deployment (with its instances when asked)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import delete, select

from engine.access import LIKE_ESCAPE, like_pattern
from engine.deployment import DeploymentResult, workflow_files
from engine.errors import Conflict, NotFound
from engine.models import DecisionDefinition, Deployment, ProcessDefinition, ProcessInstance, Resource, Timer
from engine.retention import purge_instances
from engine.store import UseCase


class Definitions(UseCase):
    """Deploy, read and delete deployments and the process definitions they hold."""

    def deploy(self, files: list[tuple[str, bytes]], *, name: str = "deployment", source: str | None = None,
               user: str | None = None, changed_only: bool = True,
               tenant_id: str | None = None) -> DeploymentResult:
        with self.store.command() as s:
            result = self.engine.deployer.deploy(s, files, name=name, source=source, user=user,
                                                 changed_only=changed_only, tenant_id=tenant_id)
            if result.created:
                self.store.record(s, None, user, "deploy", details={
                    "deployment": result.deployment_id, "name": name,
                    "processes": [f"{d['key']}:{d['version']}" for d in result.process_definitions],
                    "decisions": [f"{d['key']}:{d['version']}" for d in result.decision_definitions]})
                self.engine.timers.schedule_start_timers(s, result)
        return result

    def deploy_directory(self, directory: Path | None = None, *, user: str | None = None) -> DeploymentResult:
        directory = Path(directory or self.settings.workflows_dir)
        files = workflow_files(directory)
        if not files:
            return DeploymentResult(None, directory.name, False)
        return self.deploy(files, name=directory.name, source="workflows", user=user, changed_only=True)

    def list_definitions(self, key: str | None = None, latest_only: bool = False) -> list[dict]:
        with self.db.reader() as s:
            q = select(ProcessDefinition).order_by(ProcessDefinition.key, ProcessDefinition.version.desc())
            if key:
                q = q.where(ProcessDefinition.key == key)
            rows = s.execute(q).scalars().all()
            out, seen = [], set()
            for r in rows:
                if latest_only and r.key in seen:
                    continue
                seen.add(r.key)
                out.append(self.definition_dict(r))
            return out

    def get_definition(self, definition_id: str) -> dict:
        with self.db.reader() as s:
            row = s.get(ProcessDefinition, definition_id)
            if row is None:
                raise NotFound(f"process definition '{definition_id}' does not exist")
            return self.definition_dict(row)

    def definition_xml(self, definition_id: str) -> tuple[str, bytes]:
        with self.db.reader() as s:
            row = s.get(ProcessDefinition, definition_id) or s.get(DecisionDefinition, definition_id)
            if row is None:
                raise NotFound(f"definition '{definition_id}' does not exist")
            res = s.get(Resource, row.resource_id)
            return res.name, res.content

    @staticmethod
    def definition_dict(r: ProcessDefinition) -> dict:
        return {"id": r.id, "key": r.key, "version": r.version, "name": r.name,
                "deployment_id": r.deployment_id, "resource": r.resource_name,
                "created_at": r.created_at, "start_timers": r.start_timers,
                "start_messages": r.start_messages}

    @staticmethod
    def deployment_dict(d) -> dict:
        return {"id": d.id, "name": d.name, "source": d.source, "tenant_id": d.tenant_id,
                "deployed_at": d.deployed_at, "deployed_by": d.deployed_by}

    def list_deployments(self, *, deployment_id: str | None = None, name: str | None = None,
                         name_like: str | None = None, source: str | None = None) -> list[dict]:
        """Deployments, oldest first. `name_like` is an SQL LIKE pattern (% and _)."""
        with self.db.reader() as s:
            q = select(Deployment).order_by(Deployment.deployed_at, Deployment.id)
            if deployment_id is not None:
                q = q.where(Deployment.id == deployment_id)
            if name is not None:
                q = q.where(Deployment.name == name)
            if name_like is not None:
                q = q.where(Deployment.name.like(like_pattern(name_like), escape=LIKE_ESCAPE))
            if source is not None:
                q = q.where(Deployment.source == source)
            return [self.deployment_dict(d) for d in s.execute(q).scalars()]

    def get_deployment(self, deployment_id: str) -> dict:
        """A deployment with its resources and the definitions it created."""
        with self.db.reader() as s:
            d = s.get(Deployment, deployment_id)
            if d is None:
                raise NotFound(f"deployment '{deployment_id}' does not exist", deployment_id=deployment_id)
            info = self.deployment_dict(d)
            info["resources"] = [{"id": r.id, "name": r.name} for r in s.execute(
                select(Resource).where(Resource.deployment_id == d.id).order_by(Resource.name)).scalars()]
            info["process_definitions"] = [self.definition_dict(r) for r in s.execute(
                select(ProcessDefinition).where(ProcessDefinition.deployment_id == d.id)
                .order_by(ProcessDefinition.key)).scalars()]
            info["decision_definitions"] = [
                {"id": r.id, "key": r.key, "version": r.version, "name": r.name, "deployment_id": r.deployment_id,
                 "resource": r.resource_name}
                for r in s.execute(select(DecisionDefinition).where(DecisionDefinition.deployment_id == d.id)
                                   .order_by(DecisionDefinition.key)).scalars()]
            return info

    def deployment_resource(self, deployment_id: str, resource_id: str) -> tuple[str, bytes]:
        with self.db.reader() as s:
            res = s.get(Resource, resource_id)
            if res is None or res.deployment_id != deployment_id:
                raise NotFound(f"deployment '{deployment_id}' has no resource '{resource_id}'")
            return res.name, res.content

    def latest_resource_hashes(self, deployment_name: str, resource_names: Iterable[str], *,
                               source: str | None = None, tenant_id: str | None = None) -> dict[str, str]:
        """For each resource name, the content hash it has in the newest deployment of this name
        (and source and tenant) that holds it: what Camunda's duplicate filtering compares with."""
        names = list(resource_names)
        if not names:
            return {}
        with self.db.reader() as s:
            q = (select(Resource.name, Resource.content_hash)
                 .join(Deployment, Deployment.id == Resource.deployment_id)
                 .where(Deployment.name == deployment_name, Resource.name.in_(names))
                 .order_by(Deployment.deployed_at.desc(), Deployment.id.desc()))
            q = q.where(Deployment.source.is_(None) if source is None else Deployment.source == source)
            q = q.where(Deployment.tenant_id.is_(None) if tenant_id is None else Deployment.tenant_id == tenant_id)
            out: dict[str, str] = {}
            for name, digest in s.execute(q):
                out.setdefault(name, digest)
            return out

    def delete_deployment(self, deployment_id: str, *, cascade: bool = False, user: str | None = None) -> dict:
        """Delete a deployment: its resources and definitions. Refused while instances of its
        definitions exist, unless `cascade`: then running ones are cancelled and all of them deleted
        with every row they left (engine.retention.purge_instances: history, variables, tasks,
        external tasks, incidents, text messages). What stays is the history's own record of the
        deletion (no instance ids, no patient data) and an "erase" line in the audit log."""
        with self.db.reader() as s:
            if s.get(Deployment, deployment_id) is None:
                raise NotFound(f"deployment '{deployment_id}' does not exist", deployment_id=deployment_id)
            definitions = select(ProcessDefinition.id).where(ProcessDefinition.deployment_id == deployment_id)
            instances = s.execute(select(ProcessInstance.id, ProcessInstance.status)
                                  .where(ProcessInstance.definition_id.in_(definitions))).all()
        running = [iid for iid, status in instances if status == "active"]
        if instances and not cascade:
            raise Conflict(f"deployment '{deployment_id}' has {len(instances)} process instance(s), "
                           f"{len(running)} of them running; delete it with cascade to cancel and delete them",
                           deployment_id=deployment_id)
        for iid in running:
            with contextlib.suppress(Conflict, NotFound):  # ended meanwhile
                self.engine.cancel(iid, user=user, reason=f"deployment {deployment_id} deleted")
        with self.db.transaction() as s:
            deployment = s.get(Deployment, deployment_id)
            if deployment is None:
                raise NotFound(f"deployment '{deployment_id}' does not exist", deployment_id=deployment_id)
            rows = s.execute(select(ProcessDefinition).where(
                ProcessDefinition.deployment_id == deployment_id)).scalars().all()
            ids = [r.id for r in rows]
            doomed = select(ProcessInstance.id).where(ProcessInstance.definition_id.in_(ids))
            if not cascade and s.execute(doomed.limit(1)).first() is not None:
                raise Conflict(f"deployment '{deployment_id}' got a process instance meanwhile; try again",
                               deployment_id=deployment_id)
            if cascade and s.execute(doomed.where(ProcessInstance.status == "active").limit(1)).first():
                raise Conflict(f"a process instance of deployment '{deployment_id}' was started meanwhile; "
                               "try again", deployment_id=deployment_id)
            doomed_ids = list(s.execute(doomed).scalars())
            purge_instances(s, doomed_ids)
            s.execute(delete(Timer).where(Timer.definition_id.in_(ids)))
            s.execute(delete(ProcessDefinition).where(ProcessDefinition.id.in_(ids)))
            s.execute(delete(DecisionDefinition).where(DecisionDefinition.deployment_id == deployment_id))
            s.execute(delete(Resource).where(Resource.deployment_id == deployment_id))
            s.execute(delete(Deployment).where(Deployment.id == deployment_id))
            # The version now newest of each key gets back the start timers a newer one replaced.
            for key in sorted({r.key for r in rows}):
                newest = s.execute(select(ProcessDefinition).where(ProcessDefinition.key == key)
                                   .order_by(ProcessDefinition.version.desc()).limit(1)).scalar_one_or_none()
                if newest is not None and newest.start_timers and s.execute(select(Timer.id).where(
                        Timer.instance_id.is_(None), Timer.definition_id == newest.id).limit(1)).first() is None:
                    self.engine.timers.schedule_start_timers(s, DeploymentResult(
                        newest.deployment_id, "", False, process_definitions=[{"id": newest.id}]))
            self.store.record(s, None, user, "delete_deployment", details={
                "deployment": deployment_id, "name": deployment.name, "cascade": cascade,
                "definitions": ids, "instances_deleted": len(doomed_ids)})
        if doomed_ids:
            self.engine.audit.record("erase", user=user, resource_type="deployment", resource_id=deployment_id,
                                     details={"cascade": True, "instances_deleted": len(doomed_ids)})
        return {"deployment_id": deployment_id, "definitions": ids, "instances_deleted": len(doomed_ids)}

