"""Sparkplug B in: edge nodes' births, deaths and data, mapped to lines by a plant's file."""
