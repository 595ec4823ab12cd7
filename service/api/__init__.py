"""The HTTP layer: routes, request/response schemas, dependencies and error responses."""
