"""Town supervision: scoring groups, the dashboard, filing (报街镇备案), random checks (抽查),
the audit read and the seeds' quarterly reports."""
