"""Subsets: the files, their versions (materialize, reproduce, diff), export and privacy."""
