"""Plain helpers shared by the tests (and by the review benchmark and screenshot): data
factories, the paths to ../shared, CLI runners. Fixtures stay in the conftest.py files;
tests import helpers from here, never from conftest.py or from another test module."""
