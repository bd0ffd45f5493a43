"""Bodies of the OAuth endpoints under /v1/tp."""

from __future__ import annotations

from pydantic import Field, StrictStr

from ..validation import StrictModel


class TokenRequest(StrictModel):
    grant_type: StrictStr
    code: StrictStr = Field(min_length=1, max_length=200)
    redirect_uri: StrictStr = Field(min_length=1, max_length=2000)
    code_verifier: StrictStr = Field(min_length=1, max_length=200)
    client_id: StrictStr | None = Field(default=None, max_length=200)
    client_secret: StrictStr | None = Field(default=None, max_length=500)


class TokenBody(StrictModel):
    token: StrictStr = Field(min_length=1, max_length=500)
    reason: StrictStr | None = Field(default=None, max_length=500)


class IntrospectBody(StrictModel):
    token: StrictStr = Field(min_length=1, max_length=500)
