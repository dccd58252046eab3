"""Request bodies (unknown fields refused) and the query body's translation."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, model_validator

from gateway.domain.input_errors import refusal
from gateway.domain.text import _l
from gateway.services.queries import QueryRequest
from gateway.services.specs import AggregateBody, FilterBody, OrderBody


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=True)


class TokenBody(Body):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class SandboxTokenBody(Body):
    username: str = Field(max_length=64)


class SandboxRevokeBody(Body):
    """The hub ends a sandbox's session: the ``jti`` of the token it was given."""

    jti: str = Field(pattern=r"^[0-9a-f]{32}$")
    username: str = Field(max_length=64)


class UserBody(Body):
    username: str = Field(max_length=64)
    role: Literal["researcher", "enterprise", "admin", "auditor"]
    org: str | None = Field(default=None, max_length=128)
    password: str = Field(min_length=8, max_length=1024)


class RoleBody(Body):
    role: Literal["researcher", "enterprise", "admin", "auditor"]
    org: str | None = Field(default=None, max_length=128)


class GrantBody(Body):
    user: str | None = Field(default=None, max_length=64)
    org: str | None = Field(default=None, max_length=128)
    dataset: str = Field(max_length=63)
    epsilon: float
    delta: float | None = None
    days: int | None = None


class ApplicationBody(Body):
    """A data-use application; ``org_grant`` asks for a budget shared by the whole org."""

    dataset: str = Field(max_length=63)
    purpose: str = Field(max_length=4000)
    epsilon: float | None = None
    days: int | None = None
    org_grant: bool = False


class ApprovalBody(Body):
    epsilon: float | None = None
    days: int | None = None
    note: str = Field(default="", max_length=4000)
    extend_grant: str | None = Field(default=None, max_length=32)  # grow this grant instead


class ExtendBody(Body):
    epsilon: float
    days: int | None = None
    note: str = Field(default="", max_length=4000)


class RejectionBody(Body):
    note: str = Field(max_length=4000)


class NoteBody(Body):
    note: str = Field(default="", max_length=4000)


class QueryBody(Body):
    """Either a structured spec or DP SQL, plus the loss to spend."""

    dataset: str | None = Field(default=None, max_length=63)
    select: list[AggregateBody] | None = None
    where: list[FilterBody] = Field(default_factory=list)
    group_by: list[str] = Field(default_factory=list)
    order_by: list[OrderBody] = Field(default_factory=list)
    limit: StrictInt | None = None
    sql: str | None = Field(default=None, max_length=10_000)
    # strict: a boolean is not a number. A zCDP dataset takes rho instead of epsilon
    epsilon: StrictFloat | StrictInt | None = None
    delta: StrictFloat | StrictInt | None = None
    rho: StrictFloat | StrictInt | None = None

    @model_validator(mode="after")
    def _one_form(self) -> QueryBody:
        if (self.sql is None) == (self.select is None):
            raise refusal(_l("send either sql or a structured query (dataset and select), "
                             "not both"))
        if self.select is not None and self.dataset is None:
            raise refusal(_l("a structured query needs dataset"))
        if self.sql is not None and (self.dataset or self.where or self.group_by or self.order_by
                                     or self.limit is not None):
            raise refusal(_l("with sql, send only sql, epsilon (or rho) and delta"))
        return self

    def to_request(self) -> QueryRequest:
        """The request as the service takes it (which builds and checks the spec, so that
        a refused spec is audited with it)."""
        if self.sql is not None:
            return QueryRequest(spec=None, epsilon=self.epsilon, delta=self.delta, sql=self.sql,
                                rho=self.rho)
        body = self.model_dump(include={"dataset", "select", "where", "group_by", "order_by",
                                        "limit"}, exclude_none=True)
        return QueryRequest(spec=None, body=body, epsilon=self.epsilon, delta=self.delta,
                            rho=self.rho)
