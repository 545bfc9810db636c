"""AWS Lambda: the bundles run by AWS's own runtime interface client (awslambdaric), offline."""
