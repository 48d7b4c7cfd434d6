"""The floor every other package stands on: configuration, errors, ids, time codes, locks,
table schemas and names, quarantine records, atomic files and the prefetch helper. Imports
nothing else of the project."""
