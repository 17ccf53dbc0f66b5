"""Experiment pipeline of Mahlau & Nolde (2022): resumable runs, SQLite results store, reports."""
