"""The seed localities' schemes, shipped as data: one JSON file per template."""

import json
from functools import cache
from importlib import resources

from app.schemas.rules import RuleTemplate, TemplateCategory, TemplateItem


@cache
def templates() -> dict[str, RuleTemplate]:
    found: dict[str, RuleTemplate] = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            template = RuleTemplate.model_validate(json.loads(entry.read_text(encoding="utf-8")))
            found[template.code] = template
    return found


def all_items(categories: list[TemplateCategory]) -> list[TemplateItem]:
    return [
        item for category in categories for item in [*category.items, *all_items(category.children)]
    ]
