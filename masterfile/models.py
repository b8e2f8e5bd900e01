"""Master files: models arrive with this app's issue."""
