"""Publication domain: readers see the tables' new versions only after the checks passed."""
