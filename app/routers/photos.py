import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from app.config import Settings
from app.db import SessionDep
from app.errors import Unprocessable
from app.quick_routes import QuickRoute
from app.schemas.photos import PhotoRead
from app.security import CurrentPrincipal
from app.services import photos as service
from app.storage import photo_store

router = APIRouter(tags=["photos"], route_class=QuickRoute)

# Room for the multipart boundaries and headers around the one file.
MULTIPART_OVERHEAD = 16 * 1024
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


async def _read_upload(request: Request, limit: int) -> bytes:
    """The one uploaded file. The body limit (app.body_limit, PHOTO_MAX_BYTES and room for the
    multipart framing) has refused an oversized body as it arrived, so it is never spooled
    whole; the file's own size is checked here."""
    try:
        form = await request.form(max_files=1, max_fields=2)
    except (StarletteHTTPException, MultiPartException) as exc:
        # A broken body, or more parts than one photo needs.
        raise Unprocessable(
            "Send the photo as multipart/form-data in a field named file.",
            code="photo.missing_file",
        ) from exc
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Unprocessable(
            "Send the photo as multipart/form-data in a field named file.",
            code="photo.missing_file",
        )
    data = await upload.read(limit + 1)
    await form.close()
    if len(data) > limit:
        raise service.too_large(limit)
    return data


@router.post(
    "/photos",
    status_code=status.HTTP_201_CREATED,
    operation_id="upload_photo",
    openapi_extra=UPLOAD_BODY,
    responses={413: {"description": "Too large"}, 415: {"description": "Not an accepted image"}},
)
async def upload_photo(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    village_id: Annotated[
        uuid.UUID | None, Query(description="Default: the caller's own village")
    ] = None,
) -> PhotoRead:
    """Upload one image (JPEG, PNG, WebP, HEIC) as evidence. The type is read from the bytes;
    the image is re-encoded without its metadata (EXIF GPS positions) and anything appended."""
    settings: Settings = request.app.state.settings
    data = await _read_upload(request, settings.photo_max_bytes)
    photo = await service.upload(
        session,
        photo_store(settings),
        principal,
        data,
        village_id=village_id,
        max_pixels=settings.photo_max_pixels,
    )
    return PhotoRead.model_validate(photo)


@router.get(
    "/photos/{photo_id}",
    operation_id="get_photo",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
)
async def get_photo(
    request: Request,
    session: SessionDep,
    principal: CurrentPrincipal,
    photo_id: uuid.UUID,
    thumbnail: bool = False,
) -> Response:
    """The image (or its thumbnail, always JPEG), for its uploader and whoever may see the
    household it is evidence for."""
    data, media_type = await service.read(
        session, photo_store(request.app.state.settings), principal, photo_id, thumbnail=thumbnail
    )
    return Response(
        data,
        media_type=media_type,
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
