"""Objections (异议): a household disputes an entry or its score of a published period; the
village working group upholds it (a correction, republished) or dismisses it with a reason; a
dismissal can be escalated once to the town supervisor, whose ruling is final."""
