"""Group recommendation: interest groups, group lists from member scores, group evaluation."""
