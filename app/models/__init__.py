"""Importing this package registers every table on the shared metadata."""

from app.models.activities import Activity, ActivityCheckIn, ActivityStatus
from app.models.audit import AuditEntry
from app.models.auth import LoginAttempt, LoginMethod, LoginSession, RefreshToken, WechatIdentity
from app.models.claims import BonusAward, Claim, ClaimReview, ClaimStatus, ReviewDecision
from app.models.households import Household, HouseholdMember, Participation
from app.models.idempotency import IdempotencyRecord
from app.models.ledger import (
    GENESIS_HASH,
    HouseholdBalance,
    HouseholdYearScore,
    LedgerChain,
    LedgerEntry,
    LedgerKind,
    YearEndClose,
)
from app.models.notifications import (
    Notification,
    NotificationKind,
    NotificationStatus,
    WechatAccessToken,
)
from app.models.organisation import Town, Village, VillageGroup, VillageGroupKind
from app.models.people import VILLAGE_ROLES, InviteCode, Person, Role, RoleGrant
from app.models.photos import Photo
from app.models.rules import (
    EDITABLE_STATUSES,
    Cadence,
    ItemKind,
    RuleCategory,
    RuleItem,
    RuleSet,
    RuleSetStatus,
)
from app.models.scoring import (
    HouseholdPeriodScore,
    Outcome,
    PeriodKind,
    PeriodStatus,
    Scorecard,
    ScorecardLine,
    ScoringPeriod,
)
from app.models.shop import (
    HouseholdCard,
    OrderChannel,
    OrderStatus,
    Shop,
    ShopAllowance,
    ShopCodeUse,
    ShopItem,
    ShopOrder,
    ShopOrderLine,
    StockChange,
    StockMovement,
)

__all__ = [
    "HouseholdPeriodScore",
    "Outcome",
    "PeriodKind",
    "PeriodStatus",
    "Scorecard",
    "ScorecardLine",
    "ScoringPeriod",
    "IdempotencyRecord",
    "GENESIS_HASH",
    "HouseholdBalance",
    "HouseholdYearScore",
    "LedgerChain",
    "LedgerEntry",
    "LedgerKind",
    "YearEndClose",
    "EDITABLE_STATUSES",
    "Cadence",
    "ItemKind",
    "RuleCategory",
    "RuleItem",
    "RuleSet",
    "RuleSetStatus",
    "VILLAGE_ROLES",
    "AuditEntry",
    "Household",
    "HouseholdMember",
    "InviteCode",
    "LoginAttempt",
    "LoginMethod",
    "LoginSession",
    "Participation",
    "Person",
    "RefreshToken",
    "Role",
    "RoleGrant",
    "Town",
    "Village",
    "VillageGroup",
    "VillageGroupKind",
    "WechatIdentity",
    "Notification",
    "NotificationKind",
    "NotificationStatus",
    "WechatAccessToken",
    "BonusAward",
    "Claim",
    "ClaimReview",
    "ClaimStatus",
    "ReviewDecision",
    "Photo",
    "Activity",
    "ActivityCheckIn",
    "ActivityStatus",
    "HouseholdCard",
    "OrderChannel",
    "OrderStatus",
    "Shop",
    "ShopAllowance",
    "ShopCodeUse",
    "ShopItem",
    "ShopOrder",
    "ShopOrderLine",
    "StockChange",
    "StockMovement",
]
