"""SpurAudit core engine."""
