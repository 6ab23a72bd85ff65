"""Rate limiting against a real Redis (redis variant only)."""
