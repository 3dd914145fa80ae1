"""Durable state: the store port and its adapters (SQLite now, PostgreSQL for fleets)."""
