"""Pure logic of the insights service: experiment assignment, survey validation."""
