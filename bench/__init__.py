"""The performance benchmark behind `manage.py bench` (see README, Performance)."""
