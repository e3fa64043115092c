"""The trace viewer: trace list and filters, span tree with a waterfall, details, charts, monitoring.

``ui.traces.window.TraceWindow.open_for(parent, services, trace_id)`` opens it; ``ui.traces.links``
gives chat answers their trace ids for 'Show trace'.
"""
