from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"
DEV_WECHAT_SECRET = "dev-wechat-secret"
DEV_TEMPLATE_PREFIX = "dev-template-"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", env_file=".env", extra="ignore")

    environment: Literal["dev", "test", "production"] = "dev"
    # Outside production: run the process as if it were this moment (app/clock.py).
    clock_now: datetime | None = None
    # Empty means: run the embedded PostgreSQL in data_dir.
    database_url: str = ""
    data_dir: Path = Path(".data")

    # Connections each API process keeps open, and as many again for a burst.
    database_pool_size: int = Field(default=10, ge=1)
    # DATABASE_URL points at PgBouncer in transaction mode (README, "Behind PgBouncer").
    database_pgbouncer: bool = False

    jwt_secret: str = DEV_JWT_SECRET
    jwt_issuer: str = "village-points"
    jwt_audience: str = "village-points-api"
    access_token_minutes: int = 15
    refresh_token_days: int = 30
    bind_ticket_minutes: int = 10
    invite_code_hours: int = 72

    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_appid: str = "wx-dev-appid"
    wechat_secret: str = DEV_WECHAT_SECRET
    wechat_timeout_seconds: float = 5.0

    login_window_minutes: int = 15
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 20

    # Subscribe-message templates, as chosen in the mini-program's admin console.
    notify_template_claim_decided: str = "dev-template-claim-decided"
    notify_template_period_published: str = "dev-template-period-published"
    notify_template_objection_ruled: str = "dev-template-objection-ruled"
    notify_template_order_expiring: str = "dev-template-order-expiring"
    notify_template_award_published: str = "dev-template-award-published"
    # Which build of the mini-program a tapped message opens; villagers can only open formal.
    notify_miniprogram_state: Literal["developer", "trial", "formal"] = "formal"
    # `serve` runs a notification worker inside each app process unless this is false.
    notify_worker_in_app: bool = True
    notify_batch_size: int = 50
    notify_concurrency: int = 8
    notify_poll_seconds: float = 2.0
    notify_lease_seconds: float = 60.0
    notify_max_attempts: int = 6
    notify_retry_base_seconds: float = 30.0
    notify_retry_max_seconds: float = 3600.0
    # Empty means data_dir/photos.
    photo_dir: Path | None = None
    photo_max_bytes: int = 10 * 1024 * 1024
    photo_max_pixels: int = 50_000_000
    photo_unattached_hours: int = 24
    # JSON bodies; photo uploads and household imports have limits of their own.
    request_max_bytes: int = 1024 * 1024
    # How long before an order's pickup deadline its villager is reminded (an order placed with
    # less than that left is reminded halfway through the time it had).
    shop_order_reminder_hours: float = Field(default=24, gt=0)

    @property
    def photo_folder(self) -> Path:
        return self.photo_dir or self.data_dir / "photos"

    @model_validator(mode="after")
    def refuse_dev_secrets_in_production(self) -> "Settings":
        if self.environment == "production":
            if self.jwt_secret == DEV_JWT_SECRET or len(self.jwt_secret) < 32:
                raise ValueError("JWT_SECRET must be set to 32+ random characters in production")
            if self.wechat_secret == DEV_WECHAT_SECRET:
                raise ValueError("WECHAT_SECRET must be set in production")
            if self.clock_now is not None:
                raise ValueError("CLOCK_NOW is for trying the calendar out, never in production")
            if not self.database_url:
                raise ValueError("DATABASE_URL must point at a PostgreSQL server in production")
            if any(t.startswith(DEV_TEMPLATE_PREFIX) for t in self.notify_templates().values()):
                raise ValueError("NOTIFY_TEMPLATE_* must be set to real template ids in production")
        return self

    def notify_templates(self) -> dict[str, str]:
        """Template id by notification kind (the kinds' values)."""
        return {
            "claim_decided": self.notify_template_claim_decided,
            "period_published": self.notify_template_period_published,
            "objection_ruled": self.notify_template_objection_ruled,
            "order_expiring": self.notify_template_order_expiring,
            "award_published": self.notify_template_award_published,
        }


@lru_cache
def get_settings() -> Settings:
    return Settings()
