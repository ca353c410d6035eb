"""login_session.caller_version: raised by the database when a login's caller changes

Revision ID: c4a11e5e0001
Revises: aa34461b2bb7
Create Date: 2026-12-02 11:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4a11e5e0001"
down_revision: str | None = "aa34461b2bb7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What a request's caller (app/security.py Principal) is read from, besides its login session:
# the person's grants, their household membership and the towns of the villages those name.
# Whatever changes one of them raises the version of the person's live logins, in the same
# transaction, so a hot read that checks the version it remembered inside its own statement
# sees a change exactly when it would have seen it by reading the caller again.
CALLER_CHANGED_FUNCTION = """
CREATE FUNCTION caller_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'village' THEN
        UPDATE login_session SET caller_version = caller_version + 1
        WHERE revoked_at IS NULL AND person_id IN (
            SELECT person_id FROM role_grant WHERE village_id = NEW.id
            UNION SELECT person_id FROM household_member WHERE village_id = NEW.id);
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE login_session SET caller_version = caller_version + 1
        WHERE person_id = OLD.person_id AND revoked_at IS NULL;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.person_id <> OLD.person_id) THEN
        UPDATE login_session SET caller_version = caller_version + 1
        WHERE person_id = NEW.person_id AND revoked_at IS NULL;
    END IF;
    RETURN NULL;
END;
$$
"""

TRIGGERS = {
    "role_grant": "AFTER INSERT OR UPDATE OR DELETE",
    "household_member": "AFTER INSERT OR UPDATE OR DELETE",
    "village": "AFTER UPDATE OF town_id",
}


def upgrade() -> None:
    op.add_column(
        "login_session",
        sa.Column("caller_version", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.execute(CALLER_CHANGED_FUNCTION)
    for table, when in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {table}_caller_changed {when} ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION caller_changed()"
        )


def downgrade() -> None:
    for table in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_caller_changed ON {table}")
    op.execute("DROP FUNCTION IF EXISTS caller_changed()")
    op.drop_column("login_session", "caller_version")
