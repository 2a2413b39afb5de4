"""The operator console: server-rendered pages over the dispatch service's gRPC API."""
