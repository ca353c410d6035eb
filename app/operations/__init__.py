"""Operator commands' logic (first admin, backups, verification), called by app/cli.py."""
