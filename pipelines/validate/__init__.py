"""Validate stage: Great Expectations suites, drift against the previous night, acceptance and quarantine."""
