"""Decisions (DMN): look up a deployed decision and evaluate it, on its own (process owners test
tables this way) or from a business rule task of a running instance."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.dialect import dmn
from engine.dialect.scripting import budgets_from
from engine.errors import NotFound, ProcessError
from engine.models import DecisionDefinition, Resource
from engine.store import UseCase
from engine.variables import check_variables


class Decisions(UseCase):
    """Deployed decisions: lookup by key, binding and version; evaluation with a parse cache."""

    def __init__(self, engine):
        super().__init__(engine)
        self.models: dict = {}  # a decision version never changes: its file is parsed once per process

    def row(self, s: Session, key: str, binding: str = "latest", version: int | None = None,
            deployment_id: str | None = None) -> DecisionDefinition:
        q = select(DecisionDefinition).where(DecisionDefinition.key == key)
        if binding == "version":
            if version is None:
                raise ProcessError(f"decision '{key}': binding 'version' needs camunda:decisionRefVersion")
            q = q.where(DecisionDefinition.version == version)
        elif binding == "deployment" and deployment_id:
            q = q.where(DecisionDefinition.deployment_id == deployment_id)
        elif version is not None:
            q = q.where(DecisionDefinition.version == version)
        row = s.execute(q.order_by(DecisionDefinition.version.desc()).limit(1)).scalar_one_or_none()
        if row is None:
            what = f"version {version} of " if version is not None else ""
            raise NotFound(f"{what}decision '{key}' is not deployed", decision_key=key)
        return row

    def evaluate_row(self, s: Session, row: DecisionDefinition, variables: Mapping) -> list[dict]:
        model = self.models.get(row.id)
        if model is None:  # a decision version never changes: parse its file once per process
            res = s.get(Resource, row.resource_id)
            model = dmn.parse_dmn(res.content, res.name)
            if len(self.models) > 256:
                self.models.clear()
            self.models[row.id] = model
        return model.evaluate(row.key, variables, limits=budgets_from(self.settings).feel)

    def evaluate(self, key: str | None = None, variables: Mapping | None = None, *,
                 definition_id: str | None = None, version: int | None = None) -> list[dict]:
        """Evaluate a deployed decision on its own (process owners test tables this way)."""
        variables = check_variables(variables)
        with self.db.reader() as s:
            if definition_id:
                row = s.get(DecisionDefinition, definition_id)
                if row is None:
                    raise NotFound(f"decision definition '{definition_id}' does not exist")
            else:
                row = self.row(s, key, version=version)
            try:
                return self.evaluate_row(s, row, variables)
            except dmn.DmnEvaluationError as exc:
                raise ProcessError(f"decision '{row.key}' version {row.version}: {exc}",
                                   decision_key=row.key) from exc

    def list_decisions(self, key: str | None = None) -> list[dict]:
        with self.db.reader() as s:
            q = select(DecisionDefinition).order_by(DecisionDefinition.key, DecisionDefinition.version.desc())
            if key:
                q = q.where(DecisionDefinition.key == key)
            return [{"id": r.id, "key": r.key, "version": r.version, "name": r.name,
                     "deployment_id": r.deployment_id, "resource": r.resource_name}
                    for r in s.execute(q).scalars()]
