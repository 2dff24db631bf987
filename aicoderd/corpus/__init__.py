"""The corpus stage: documents in, a cleaned, redacted, de-duplicated, split training corpus out.

Light modules (``manifest``) are safe for the daemon and the CLI to import; ``build`` pulls in
numpy and, through ``dataset``, HF ``datasets`` — it runs in a job's child process or in the
standalone ``aicoder corpus build`` command.
"""
