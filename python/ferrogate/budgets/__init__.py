"""Budgets: reservations against key/user/team budgets, and soft-limit notifications."""
