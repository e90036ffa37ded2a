"""Reporting: from a run's records to summary.json, tables, report.md and figures."""
