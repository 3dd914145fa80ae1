"""Workflow definitions: parsing, validation, planning."""
