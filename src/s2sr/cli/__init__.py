"""Command-line interface (thin click commands over library functions)."""
