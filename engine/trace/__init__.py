"""Traces and monitoring: OpenTelemetry spans for every request, the local span store, metrics, drift."""
