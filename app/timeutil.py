"""Periods and deadlines are reckoned in the villages' own time zone."""

from datetime import datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


def wechat_time(at: datetime) -> str:
    """A subscribe message's time field: "2019年10月1日 15:01" in the villages' time (WeChat
    refuses a dashed date or seconds)."""
    local = at.astimezone(SHANGHAI)
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"
