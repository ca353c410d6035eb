"""WeChat's access token, cached in the database so every API process and worker shares one."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from app.integrations.wechat import WechatClient
from app.models.notifications import WechatAccessToken

# In normal mode stable_token hands out the next token during the current one's last five
# minutes, so refreshing inside that window renews it before anyone is refused.
REFRESH_MARGIN = timedelta(minutes=5)
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class AccessTokens:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        wechat: WechatClient,
        appid: str,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._wechat = wechat
        self._appid = appid
        # This process's copy, so a send costs no query; a token another process replaced is
        # answered with 40001, and `replace` then finds the new one in the database.
        self._known: tuple[str, datetime] | None = None

    def _remember(self, token: str, expires_at: datetime) -> str:
        self._known = (token, expires_at)
        return token

    async def current(self) -> str:
        """The cached token, fetched first if it is missing or about to expire."""
        if self._known is not None and _fresh(self._known[1]):
            return self._known[0]
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(col(WechatAccessToken.token), col(WechatAccessToken.expires_at)).where(
                        col(WechatAccessToken.appid) == self._appid
                    )
                )
            ).first()
        if row is not None and _fresh(row.expires_at):
            return self._remember(row.token, row.expires_at)
        return await self._refresh(rejected=None)

    async def replace(self, rejected: str) -> str:
        """A token other than the one WeChat just refused (40001, 40014, 42001)."""
        return await self._refresh(rejected=rejected)

    async def _refresh(self, *, rejected: str | None) -> str:
        # The row lock makes one process fetch while the others wait and then reuse its token.
        async with self._sessionmaker() as session, session.begin():
            await session.execute(
                insert(WechatAccessToken)
                .values(appid=self._appid, token="", expires_at=NEVER)
                .on_conflict_do_nothing()
            )
            cached = (
                await session.execute(
                    select(WechatAccessToken)
                    .where(col(WechatAccessToken.appid) == self._appid)
                    .with_for_update()
                )
            ).scalar_one()
            now = datetime.now(UTC)
            if rejected is None and _fresh(cached.expires_at):
                return self._remember(cached.token, cached.expires_at)
            if rejected is not None and cached.token != rejected and cached.expires_at > now:
                return self._remember(cached.token, cached.expires_at)
            fetched = await self._wechat.stable_token()
            if rejected is not None and fetched.token == rejected:
                # WeChat still hands out the token it refused: only a forced refresh replaces it.
                fetched = await self._wechat.stable_token(force_refresh=True)
            token, expires_at = fetched.token, now + timedelta(seconds=fetched.expires_in)
            cached.token, cached.expires_at, cached.refreshed_at = token, expires_at, now
        return self._remember(token, expires_at)


def _fresh(expires_at: datetime) -> bool:
    return expires_at - REFRESH_MARGIN > datetime.now(UTC)
