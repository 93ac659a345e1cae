"""The domain core: records, live state, events, planning, alerts and the loop."""
