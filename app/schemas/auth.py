from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class WechatLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Code


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: datetime
    refresh_token: str
    refresh_expires_at: datetime


class WechatLoginResult(BaseModel):
    """Either tokens, or a bind ticket when this WeChat user is not yet linked to a person."""

    status: Literal["ok", "bind_required"]
    tokens: TokenPair | None = None
    bind_ticket: str | None = None
    bind_ticket_expires_at: datetime | None = None


class WechatBind(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bind_ticket: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    invite_code: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, to_upper=True, min_length=4, max_length=32),
        ]
        | None
    ) = None
    phone_code: Code | None = None

    @model_validator(mode="after")
    def one_proof(self) -> "WechatBind":
        if (self.invite_code is None) == (self.phone_code is None):
            raise ValueError("give exactly one of invite_code or phone_code")
        return self


class PasswordLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The characters an account's username may have (schemas.people.Username): anything else
    # names no account, and could pose as the key invite-code binds are throttled under.
    username: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$"
        ),
    ]
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=200)]
