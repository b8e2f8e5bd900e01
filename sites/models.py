"""Spoke sites: models arrive with this app's issue."""
