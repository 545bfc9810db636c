"""Developer tooling around the functions: the local server and CLI (``python -m shared ...``), deploy
files and Lambda bundles. Never part of a deployed function: a bundle carries ``shared/`` and the function
only (see ``devtools.bundle``)."""
