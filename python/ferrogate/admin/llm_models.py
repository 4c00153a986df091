"""The request and response models of ``/admin/v1/llm/*`` (:mod:`ferrogate.admin.llm`): the one source of their
validation and of their OpenAPI schemas. Upstream bodies are the configuration's own ``Upstream`` and ``ModelGroup``
models; answers never carry an upstream's key or header values.

Example:
    >>> RouteQuery.model_validate({"model": "smart", "sla_ms": 800}).budget_left_usd is None
    True
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ferrogate.config import ModelGroup
from ferrogate.config.model import Classification


class HealthOut(BaseModel):
    """A deployment's circuit and latency, shared by every worker of the instance (``last_error``: this worker's)."""

    model_config = ConfigDict(extra="allow")

    state: str | None = Field(None, description="closed, open or half_open")
    error_rate: float | None = None
    requests: int | None = Field(None, description="attempts in the sliding window")
    consecutive_failures: int | None = None
    open_for_s: float | None = None
    in_flight: int | None = None
    ttft_ewma_ms: float | None = None
    latency_ewma_ms: float | None = None
    last_status: int | None = None
    last_error: str | None = None


class UpstreamDeploymentOut(BaseModel):
    """A deployment on an upstream: its group, the upstream's model name, its key (``upstream/model``), health."""

    group: str
    model: str
    key: str
    health: HealthOut | None = Field(description="null: no health table in this gateway")


class UpstreamOut(BaseModel):
    """An upstream in force (its key and header values never shown)."""

    name: str
    provider: str
    base_url: str | None
    has_api_key: bool
    header_names: list[str]
    timeouts: dict[str, float]
    source: Literal["file", "admin"] = Field(description="admin: set through this API (stored)")
    deployments: list[UpstreamDeploymentOut]


class UpstreamList(BaseModel):
    """Every upstream in force."""

    data: list[UpstreamOut]


class DeploymentOut(BaseModel):
    """Where a model group is served."""

    upstream: str
    model: str


class ModelGroupOut(BaseModel):
    """A model group in force: its deployments, where it comes from, and its whole definition (what PUT takes)."""

    name: str
    owned_by: str
    aliases: list[str]
    deployments: list[DeploymentOut]
    source: Literal["file", "admin"]
    definition: ModelGroup


class ModelGroupList(BaseModel):
    """Every model group in force."""

    data: list[ModelGroupOut]


class RulesIn(BaseModel):
    """Routing rules (Cedar policies) replacing the configuration file's."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=1_000_000, description="Cedar policies (docs/routing.md); empty: no rules")


class RulesOut(BaseModel):
    """The routing rules in force."""

    text: str = Field(description="the stored rules, or the file's inline routing.rules")
    rules_file: str | None = Field(description="the file's routing.rules_file, also in force (source file only)")
    source: Literal["file", "admin"]
    updated_at: datetime | None = Field(description="null: never set through this API")
    updated_by: str | None
    version: int = Field(description="the store's routing version: it rises with every change")


class DeleteQuery(BaseModel):
    """How a delete applies."""

    model_config = ConfigDict(extra="forbid")

    restore: bool = Field(False, description="drop the stored override only: the configuration file's applies again")


class RouteQuery(BaseModel):
    """A request to route (nothing is sent): who asks, for which model, under which constraints."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256, description="a model group name or alias")
    team: str = Field("", max_length=200, description='the team id of the key ("": none)')
    key: str = Field("", max_length=200, description="the key id")
    user: str = Field("", max_length=200, description="the user id")
    classification: Classification | None = Field(None, description="null: the configuration's default")
    sla_ms: int = Field(0, ge=0, le=86_400_000, description="the latency SLA (0: none)")
    budget_left_usd: float | None = Field(None, ge=0, le=1e12, allow_inf_nan=False, description="null: no budget")
    stream: bool = False


class RouteOut(BaseModel):
    """The router's answer (``Router.explain``): the group, the ordered candidates with their eligibility and
    score, the deployment chosen, and the rules that decided."""

    model_config = ConfigDict(extra="allow")


class StatusOut(BaseModel):
    """This worker's configuration reload state (each worker answers for itself)."""

    file: str | None = Field(description="the configuration file (null: the built-in default)")
    watching: bool = Field(description="the file is watched for edits")
    version: int | None = Field(description="the store's routing version applied (null: none read yet)")
    reloaded_at: datetime | None
    last_error: str | None = Field(description="the last refused edit or change, with its YAML path")
    last_error_at: datetime | None
    restart_needed: list[str] = Field(description="sections of the file edited that are read at start only")
