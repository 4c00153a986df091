"""The HTTP server: the RSGI application and its route table."""
