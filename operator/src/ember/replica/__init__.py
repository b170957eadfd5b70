"""The operator's one client of replica supervisors (replica/client.py)."""
