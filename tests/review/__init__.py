"""Tests of s2sr review (a package, so that its conftest.py is review.conftest)."""
