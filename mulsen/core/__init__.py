"""Core of the toolkit every subpackage builds on: errors, atomic writes, progress, geometry, typed records."""
