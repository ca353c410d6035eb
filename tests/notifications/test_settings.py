"""Production refuses the development template ids, as it refuses the development secrets."""

import pytest
from pydantic import ValidationError

from app.config import Settings

PRODUCTION = {
    "environment": "production",
    "database_url": "postgresql://vp@db/vp",
    "jwt_secret": "x" * 40,
    "wechat_secret": "a-real-secret",
}
TEMPLATES = {
    "notify_template_claim_decided": "tpl-claim",
    "notify_template_period_published": "tpl-period",
    "notify_template_objection_ruled": "tpl-objection",
    "notify_template_order_expiring": "tpl-order",
    "notify_template_award_published": "tpl-award",
}


def test_production_needs_every_template_id() -> None:
    with pytest.raises(ValidationError, match="NOTIFY_TEMPLATE_"):
        Settings(**PRODUCTION, **{**TEMPLATES, "notify_template_order_expiring": "dev-template-x"})

    settings = Settings(**PRODUCTION, **TEMPLATES)

    assert settings.notify_templates() == {
        "claim_decided": "tpl-claim",
        "period_published": "tpl-period",
        "objection_ruled": "tpl-objection",
        "order_expiring": "tpl-order",
        "award_published": "tpl-award",
    }
