"""Alarms and events (ALARM0, MAIL0): see service.py; codes.py is the table of codes."""
