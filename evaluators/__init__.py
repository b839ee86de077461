"""What one candidate is worth on one device: loading, static checks, the sandbox, verification and timing."""
__version__ = "0.1.0"
