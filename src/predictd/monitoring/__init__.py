"""Feedback, performance, drift and alerts: what happens to a model after it is deployed."""
