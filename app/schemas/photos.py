import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class PhotoRead(BaseModel):
    """An upload, re-encoded; attach it to a claim by its id."""

    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    village_id: uuid.UUID
    media_type: str
    width: int
    height: int
    size_bytes: int
    claim_id: uuid.UUID | None
    created_at: datetime
