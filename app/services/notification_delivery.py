"""The worker that sends the notification outbox through subscribeMessage.send.

Workers claim rows with FOR UPDATE SKIP LOCKED and lease them, so any number of them (in the API
processes and `village-points notify-worker`) share the outbox without sending a message twice.
A worker never starts or continues a send after its lease's local deadline, and another worker
can only take the row once the lease has run out in the database, after that deadline.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from app import metrics
from app.config import Settings
from app.errors import AppError
from app.integrations.wechat import TOKEN_REJECTED, USER_REFUSED, SendResult, WechatClient
from app.models.notifications import Notification, NotificationKind, NotificationStatus
from app.services.wechat_tokens import AccessTokens

log = logging.getLogger(__name__)

# Errors a retry cannot fix: a wrong openid, template id, data or page.
PERMANENT_ERRCODES = frozenset({40003, 40037, 47003, 41030})
ERRMSG_LENGTH = 200
WORKER_TASK = "notification-worker"


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    openid: str
    kind: NotificationKind
    page: str | None
    data: dict[str, Any]
    attempts: int
    lease_token: uuid.UUID
    # On the event loop's clock: no send may start or run past it.
    deadline: float


class NotificationWorker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._wechat = WechatClient(http, settings)
        self._tokens = AccessTokens(sessionmaker, self._wechat, settings.wechat_appid)
        self._templates = settings.notify_templates()
        # Enough for a send, a token refresh and the retried send, each within its timeout,
        # so a send is never cut off by the lease; what is left of the lease is spare.
        self.send_budget = 4 * settings.wechat_timeout_seconds
        if settings.notify_lease_seconds <= self.send_budget + 1:
            raise ValueError("NOTIFY_LEASE_SECONDS must exceed 4 × WECHAT_TIMEOUT_SECONDS + 1")

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; the batch in hand is finished first."""
        while not stop.is_set():
            try:
                claimed = await self.deliver_batch()
            except Exception:
                # The database or the network is down: keep the worker alive and try again.
                log.exception("notification batch failed")
                claimed = 0
            if claimed < self._settings.notify_batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._settings.notify_poll_seconds)

    async def deliver_batch(self) -> int:
        """Claim due messages, send them, record each outcome; returns how many were claimed."""
        batch = await self._claim()
        if not batch:
            return 0
        semaphore = asyncio.Semaphore(self._settings.notify_concurrency)

        async def deliver(message: Claimed) -> None:
            async with semaphore:
                try:
                    await self._deliver(message)
                except Exception:
                    # Failing the batch would cancel the other sends, some already accepted
                    # by WeChat but not yet recorded, and they would be sent again once their
                    # leases ran out. This message's lease runs out and it is tried again.
                    log.exception("notification %s could not be delivered", message.id)

        async with asyncio.TaskGroup() as group:
            for message in batch:
                group.create_task(deliver(message))
        return len(batch)

    async def _claim(self) -> list[Claimed]:
        settings = self._settings
        lease_token = uuid.uuid4()
        # Taken before the database's now(), so the local deadline falls before the lease's end.
        deadline = asyncio.get_running_loop().time() + settings.notify_lease_seconds - 1
        due = (
            select(col(Notification.id))
            .where(
                or_(
                    (col(Notification.status) == NotificationStatus.QUEUED)
                    & (col(Notification.next_attempt_at) <= func.now()),
                    # A worker that died mid-batch: its lease has run out.
                    (col(Notification.status) == NotificationStatus.SENDING)
                    & (col(Notification.lease_expires_at) <= func.now()),
                )
            )
            .order_by(col(Notification.next_attempt_at))
            .limit(settings.notify_batch_size)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        statement = (
            update(Notification)
            .where(col(Notification.id) == due.c.id)
            .values(
                status=NotificationStatus.SENDING,
                attempts=col(Notification.attempts) + 1,
                lease_token=lease_token,
                lease_expires_at=func.now() + timedelta(seconds=settings.notify_lease_seconds),
            )
            .returning(
                col(Notification.id),
                col(Notification.openid),
                col(Notification.kind),
                col(Notification.page),
                col(Notification.data),
                col(Notification.attempts),
            )
        )
        async with self._sessionmaker() as session, session.begin():
            rows = (await session.execute(statement)).all()
        return [
            Claimed(r.id, r.openid, r.kind, r.page, r.data, r.attempts, lease_token, deadline)
            for r in rows
        ]

    async def _deliver(self, message: Claimed) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() + self.send_budget > message.deadline:
            # The batch took too long: hand the message back rather than race the lease.
            await self._release(message)
            return
        template_id = self._templates[message.kind]
        try:
            async with asyncio.timeout_at(message.deadline):
                result = await self._send(message, template_id)
        except TimeoutError:
            result = SendResult(None, "the send outlasted its lease")
        except AppError as exc:
            # Only the token API raises: WeChat refused or failed to hand out a token.
            result = SendResult(None, f"access token: {exc}")
        await self._record(message, template_id, result)

    async def _send(self, message: Claimed, template_id: str) -> SendResult:
        body: dict[str, Any] = {
            "touser": message.openid,
            "template_id": template_id,
            "data": message.data,
            "miniprogram_state": self._settings.notify_miniprogram_state,
            "lang": "zh_CN",
        }
        if message.page:
            body["page"] = message.page
        token = await self._tokens.current()
        result = await self._wechat.send_subscribe_message(token, body)
        if result.errcode in TOKEN_REJECTED:
            token = await self._tokens.replace(token)
            result = await self._wechat.send_subscribe_message(token, body)
        return result

    def _retry_delay(self, attempts: int) -> timedelta:
        settings = self._settings
        seconds = settings.notify_retry_base_seconds * 2 ** (attempts - 1)
        return timedelta(seconds=min(seconds, settings.notify_retry_max_seconds))

    async def _record(self, message: Claimed, template_id: str, result: SendResult) -> None:
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "template_id": template_id,
            "last_errcode": result.errcode,
            "last_errmsg": result.errmsg[:ERRMSG_LENGTH],
            "lease_token": None,
            "lease_expires_at": None,
        }
        if result.errcode == 0:
            values |= {"status": NotificationStatus.SENT, "sent_at": now}
        elif result.errcode == USER_REFUSED:
            values["status"] = NotificationStatus.REFUSED
        elif (
            result.errcode in PERMANENT_ERRCODES
            or message.attempts >= self._settings.notify_max_attempts
        ):
            values["status"] = NotificationStatus.FAILED
        else:
            values |= {
                "status": NotificationStatus.QUEUED,
                "next_attempt_at": now + self._retry_delay(message.attempts),
            }
        await self._update_leased(message, values)
        metrics.notification_outcome(values["status"])
        if values["status"] is NotificationStatus.FAILED:
            log.warning(
                "notification %s failed after %d attempt(s): %s %s",
                message.id,
                message.attempts,
                result.errcode,
                result.errmsg,
            )

    async def _release(self, message: Claimed) -> None:
        await self._update_leased(
            message,
            {
                "status": NotificationStatus.QUEUED,
                "attempts": col(Notification.attempts) - 1,
                "lease_token": None,
                "lease_expires_at": None,
            },
        )

    async def _update_leased(self, message: Claimed, values: dict[str, Any]) -> None:
        # Matching the lease token: a worker that lost its lease must not overwrite the next one.
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                update(Notification)
                .where(
                    col(Notification.id) == message.id,
                    col(Notification.lease_token) == message.lease_token,
                )
                .values(**values)
            )


@contextlib.asynccontextmanager
async def running_worker(
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    settings: Settings,
) -> AsyncIterator[None]:
    """A worker in the background of the block; on exit it finishes its sends, briefly."""
    stop = asyncio.Event()
    worker = NotificationWorker(sessionmaker, http, settings)
    task = asyncio.create_task(worker.run(stop), name=WORKER_TASK)
    try:
        yield
    finally:
        stop.set()
        try:
            # Sends cut short stay leased and are taken up again when the lease runs out.
            await asyncio.wait_for(task, timeout=worker.send_budget)
        except TimeoutError:
            log.warning("notification worker stopped mid-batch; its leases will run out")
