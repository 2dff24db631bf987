"""aicoderd: a per-user service that keeps a personal code model fresh."""

__version__ = "0.1.0"
