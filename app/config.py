from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"
DEV_WECHAT_SECRET = "dev-wechat-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", env_file=".env", extra="ignore")

    environment: Literal["dev", "test", "production"] = "dev"
    # Empty means: run the embedded PostgreSQL in data_dir.
    database_url: str = ""
    data_dir: Path = Path(".data")

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

    # Empty means data_dir/photos.
    photo_dir: Path | None = None
    photo_max_bytes: int = 10 * 1024 * 1024
    photo_max_pixels: int = 40_000_000
    photo_unattached_hours: int = 24

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
            if not self.database_url:
                raise ValueError("DATABASE_URL must point at a PostgreSQL server in production")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
