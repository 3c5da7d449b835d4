"""The REST API's plumbing: keys, scopes, errors, rate limit, pagination, schema, URLs."""
