"""Showing results to people and programs: output formats, plots and contact sheets."""
