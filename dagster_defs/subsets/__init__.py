"""Subset assets: one per sql/subsets/*.sql file, and the SQL views they read."""
